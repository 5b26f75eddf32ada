"""The canary judge: compares a stepped canary's arms over its current step (candidate against
production, from rollups) on error rate, p95 latency, drift and feedback accuracy, and decides
advance, hold, roll back or promote. The controller calls `CanaryJudge.tick` on every pass.

Rules (defaults in core/actions/canary.py, tolerances stored per canary):
- hold while either arm has fewer than `min_requests` requests in the step, or the step is
  younger than `min_seconds`: too little traffic or time is never a pass or a fail;
- roll back when the candidate is clearly worse: its error rate is more than
  `max_error_increase` above production's and its Wilson interval lies above production's
  rate; or its p95 is more than `max_p95_increase` (relative) and P95_SLACK_MS above
  production's; or, with `slo_min_feedback` annotated items on each arm, its feedback
  accuracy's Wilson upper bound is below production's lower bound; or it drifts from its own
  holdout beyond the channel's PSI threshold while production does not;
- otherwise advance to the next step, or promote after the last (100 %) step.
Accuracy and drift are judged only where they have enough data; the reason says when not.
At 100 % production gets no traffic, so its baseline is its rollups of the step before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from core.actions.base import Actor
from core.actions.canary import close_if_abandoned, decide_canary
from core.ml import monitoring_stats as stats
from core.monitoring import Reference, drift_state, summarize
from db.engine import session_scope
from db.errors import RegistryError
from db.models import utcnow
from db.queries.monitoring import Signals
from db.repo import canary as repo
from db.repo.canary import CanaryInfo
from db.repo.channels import ChannelInfo, get_channel

log = logging.getLogger("channelhub.canary")

P95_SLACK_MS = 2.0  # below this difference latency is never "worse" (histogram resolution)
HOLD_RECORD_S = 600  # a hold is recorded on a step's first pass, then at most every 10 minutes
BASELINE_FALLBACK = timedelta(hours=1)  # production's window at a 100 % first step


@dataclass(frozen=True)
class ArmEvidence:
    """One arm over the evaluated window: the numbers a decision is taken on."""

    version_id: int
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    drift_psi: float | None
    drift: str  # ok | drift | not_enough_data | no_reference
    annotated: int
    accuracy: float | None
    accuracy_interval: tuple[float, float] | None

    @property
    def total(self) -> int:
        return self.requests + self.errors


def arm_evidence(
    s: Signals, version_id: int, reference: Reference | None, *, psi: float, min_count: int
) -> ArmEvidence:
    a = summarize(s)
    if reference is None:
        drift, value = "no_reference", None
    else:
        state = drift_state(s, reference, min_count=min_count, psi_threshold=psi)
        drift, value = state.state, state.value
    return ArmEvidence(
        version_id, a.requests, a.errors, a.error_rate, a.p95_ms, value, drift, a.annotated,
        a.accuracy, a.accuracy_interval,
    )  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    decision: str
    reason: str
    evidence: dict[str, Any]


def _hold_reasons(plan: CanaryInfo, prod: ArmEvidence, cand: ArmEvidence, age_s: float):
    missing = [
        f"{arm} {e.total} of {plan.min_requests} requests"
        for arm, e in (("candidate", cand), ("production", prod))
        if e.total < plan.min_requests
    ]
    if age_s < plan.min_seconds:
        missing.append(f"{age_s / 60:.1f} of {plan.min_seconds / 60:g} min")
    return missing


def _error_worse(plan: CanaryInfo, prod: ArmEvidence, cand: ArmEvidence) -> str | None:
    if cand.error_rate is None or prod.error_rate is None:
        return None
    low, _ = stats.wilson_interval(cand.errors, cand.total)
    if cand.error_rate - prod.error_rate > plan.max_error_increase and low > prod.error_rate:
        return (
            f"error rate {cand.error_rate:.1%} vs {prod.error_rate:.1%} "
            f"(> +{plan.max_error_increase:.1%})"
        )
    return None


def _latency_worse(plan: CanaryInfo, prod: ArmEvidence, cand: ArmEvidence) -> str | None:
    if cand.p95_ms is None or prod.p95_ms is None:
        return None
    limit = prod.p95_ms * (1 + plan.max_p95_increase)
    if cand.p95_ms > limit and cand.p95_ms - prod.p95_ms > P95_SLACK_MS:
        return f"p95 {cand.p95_ms:.0f} ms vs {prod.p95_ms:.0f} ms (> +{plan.max_p95_increase:.0%})"
    return None


def _accuracy(prod: ArmEvidence, cand: ArmEvidence, min_feedback: int) -> tuple[str | None, str]:
    """(why worse or None, what was seen)."""
    if min(prod.annotated, cand.annotated) < max(min_feedback, 1):
        seen = f"{cand.annotated}/{prod.annotated} annotated, {min_feedback} needed per arm"
        return None, f"accuracy not judged ({seen})"
    (_, cand_high), (prod_low, _) = cand.accuracy_interval, prod.accuracy_interval
    seen = f"accuracy {cand.accuracy:.1%} vs {prod.accuracy:.1%}"
    if cand_high < prod_low:
        return f"{seen} (upper {cand_high:.1%} < lower {prod_low:.1%})", seen
    return None, seen


def _drift(prod: ArmEvidence, cand: ArmEvidence, psi: float) -> tuple[str | None, str]:
    if cand.drift in ("no_reference", "not_enough_data"):
        return None, f"drift not judged ({cand.drift.replace('_', ' ')})"
    seen = f"drift PSI {cand.drift_psi or 0.0:.2f}"
    if cand.drift == "drift" and prod.drift != "drift":
        return f"{seen} > {psi:.2f} against its holdout (production does not drift)", seen
    return None, seen


def judge(
    plan: CanaryInfo,
    prod: ArmEvidence,
    cand: ArmEvidence,
    *,
    age_s: float,
    min_feedback: int,
    psi: float,
) -> Verdict:
    """The decision on `plan`'s current step from both arms' evidence (pure)."""
    evidence = {
        "production": asdict(prod), "candidate": asdict(cand), "step_seconds": round(age_s),
        "min_requests": plan.min_requests, "min_seconds": plan.min_seconds,
    }  # fmt: skip
    missing = _hold_reasons(plan, prod, cand, age_s)
    if missing:
        return Verdict("hold", "waiting for " + ", ".join(missing), evidence)
    accuracy_worse, accuracy_seen = _accuracy(prod, cand, min_feedback)
    drift_worse, drift_seen = _drift(prod, cand, psi)
    worse = [_error_worse(plan, prod, cand), _latency_worse(plan, prod, cand)]
    worse = [w for w in [*worse, accuracy_worse, drift_worse] if w]
    if worse:
        return Verdict("rollback", "candidate worse: " + "; ".join(worse), evidence)
    seen = [
        f"error rate {_pct(cand.error_rate)} vs {_pct(prod.error_rate)}",
        f"p95 {_ms(cand.p95_ms)} vs {_ms(prod.p95_ms)}",
        accuracy_seen,
        drift_seen,
    ]
    decision = "promote" if plan.is_last_step else "advance"
    return Verdict(decision, "candidate not worse: " + "; ".join(seen), evidence)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


class CanaryJudge:
    """Evaluates every running canary once per `tick` and applies its decision as an action."""

    def __init__(
        self, actor: Actor, reference: Callable[[int], Reference | None] | None = None
    ) -> None:
        self.actor = actor
        self.reference = reference or (lambda version_id: None)

    def evaluate(self, plan: CanaryInfo, channel: ChannelInfo, now: datetime) -> Verdict:
        """The verdict on `plan`'s current step at `now` (reads rollups, writes nothing)."""
        objectives = channel.objectives
        psi = objectives.get("slo_max_drift_psi") or stats.PSI_THRESHOLD
        min_count = objectives.get("drift_min_count") or stats.DEFAULT_MIN_COUNT
        prod_id = channel.production_version_id
        if prod_id is None:
            return Verdict("hold", "the channel serves no production version to compare with", {})
        since, until = plan.step_started_at, None
        if plan.traffic >= 1.0:  # production gets nothing now: its baseline is the step before
            since = plan.previous_step_started_at or plan.step_started_at - BASELINE_FALLBACK
            until = plan.step_started_at
        with session_scope() as s:
            cand = repo.arm_signals(session=s, channel_id=plan.channel_id, arm="candidate",
                                    version_id=plan.candidate_version_id,
                                    since=plan.step_started_at)  # fmt: skip
            prod = repo.arm_signals(session=s, channel_id=plan.channel_id, arm="production",
                                    version_id=prod_id, since=since, until=until)  # fmt: skip
        return judge(
            plan,
            arm_evidence(prod, prod_id, self.reference(prod_id), psi=psi, min_count=min_count),
            arm_evidence(
                cand,
                plan.candidate_version_id,
                self.reference(plan.candidate_version_id),
                psi=psi,
                min_count=min_count,
            ),  # fmt: skip
            age_s=(now - plan.step_started_at).total_seconds(),
            min_feedback=objectives.get("slo_min_feedback") or 20,
            psi=psi,
        )

    def tick(self, now: datetime | None = None, slug: str | None = None) -> list[str]:
        """One pass over the running canaries (or one channel's); returns what was decided."""
        now = now or utcnow()
        with session_scope() as s:
            plans = [p for p in repo.running_canaries(session=s) if slug in (None, p.channel_slug)]
        changes = []
        for plan in plans:
            try:
                line = self.step(plan, now, record_hold=slug is not None)
            except RegistryError as exc:  # another controller decided first, or a bad version
                log.warning("canary %d of %s: %s", plan.id, plan.channel_slug, exc)
                line = f"{plan.channel_slug}: canary not decided: {exc}"
            if line:
                changes.append(line)
        return changes

    def step(self, plan: CanaryInfo, now: datetime, *, record_hold: bool = False) -> str | None:
        """Decide `plan`'s current step and apply the decision; a hold is recorded only on the
        step's first pass and then every HOLD_RECORD_S (or always when `record_hold`)."""
        with session_scope() as s:
            channel = get_channel(session=s, slug=plan.channel_slug)
            closed = close_if_abandoned(s, self.actor, plan, channel)
        if closed is not None:
            return f"{plan.channel_slug}: canary closed ({closed.decision}): {closed.reason}"
        verdict = self.evaluate(plan, channel, now)
        if verdict.decision == "hold" and not (record_hold or self._hold_is_news(plan)):
            return None
        decide_canary(
            actor=self.actor, canary_id=plan.id, step_index=plan.step_index,
            decision=verdict.decision, reason=verdict.reason, evidence=verdict.evidence, now=now,
        )  # fmt: skip
        if verdict.decision == "hold" and not record_hold:
            return None  # recorded, but nothing changed: not one of the controller's changes
        where = f"{plan.channel_slug}: canary {verdict.decision} at {plan.step_label}"
        return f"{where}: {verdict.reason}"

    def _hold_is_news(self, plan: CanaryInfo) -> bool:
        with session_scope() as s:
            last = repo.list_decisions(session=s, canary_id=plan.id, limit=1)
        if not last or last[0].step_index != plan.step_index or last[0].decision != "hold":
            return True
        return (utcnow() - last[0].created_at).total_seconds() >= HOLD_RECORD_S
