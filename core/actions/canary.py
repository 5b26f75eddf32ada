"""Stepped canaries and restores: start a canary plan, record a decision on its current step
(and make the serving change it implies through the channel actions), restore an earlier
production version in one step. The controller decides (core/ops/canary.py); these apply."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit
from core.actions.channels import end_canary, promote_version, refuse_production, start_canary
from db.errors import ConflictError, RegistryError
from db.models import CANARY_DECISIONS, utcnow
from db.queries.timeline import served_versions
from db.repo import canary as repo
from db.repo import channels as channel_repo
from db.repo.canary import CanaryInfo, DecisionInfo
from db.repo.channels import ChannelInfo

# Defaults of a plan. 10 → 25 → 50 → 100 %: a bad candidate meets a tenth of the users first,
# and each step doubles its exposure at most. 200 requests per arm make a 2-point error-rate
# difference and a doubled p95 visible (binomial noise of 1 % errors at n=200 is ±1.4 points);
# 5 minutes per step see at least one full minute rollup of each arm after the step began.
DEFAULT_STEPS = (10.0, 25.0, 50.0, 100.0)
DEFAULT_MIN_REQUESTS = 200
DEFAULT_MIN_SECONDS = 300
# Tolerances: how much worse the candidate may be before it is rolled back.
DEFAULT_MAX_ERROR_INCREASE = 0.02  # error rate, absolute (2 percentage points)
DEFAULT_MAX_P95_INCREASE = 0.5  # p95 latency, relative (+50 %: histogram bins are ~33 % wide)
MAX_STEPS = 10


def parse_steps(steps: Iterable[float] | str | None) -> list[float]:
    """Traffic percents, strictly ascending in (0, 100], ending at 100 ("10,25,50,100" too)."""
    if steps is None:
        return list(DEFAULT_STEPS)
    try:
        if isinstance(steps, str):
            steps = [s for s in steps.replace(" ", "").split(",") if s]
        values = [float(s) for s in steps]
    except (TypeError, ValueError) as exc:
        raise RegistryError("canary steps must be numbers (percent), e.g. 10,25,50,100") from exc
    if not values or len(values) > MAX_STEPS:
        raise RegistryError(f"a canary needs 1 to {MAX_STEPS} steps (got {len(values)})")
    if any(not 0 < v <= 100 for v in values):
        raise RegistryError("each canary step is a traffic percent in (0, 100]")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise RegistryError("canary steps must go up (e.g. 10,25,50,100)")
    if values[-1] != 100:
        raise RegistryError("the last canary step must be 100 (promotion follows it)")
    return values


def _check_limits(min_requests: int, min_seconds: int, error: float, p95: float) -> None:
    if not isinstance(min_requests, int) or min_requests < 1:
        raise RegistryError("minimum requests per arm must be a whole number of at least 1")
    if not isinstance(min_seconds, int) or min_seconds < 0:
        raise RegistryError("minimum time per step must be 0 or more seconds")
    if not 0 <= error <= 1:
        raise RegistryError("the error-rate tolerance is a share between 0 and 1")
    if not 0 <= p95 <= 100:
        raise RegistryError("the p95 tolerance is a relative increase between 0 and 100")


def close_if_abandoned(
    session: Session, actor: Actor, plan: CanaryInfo, channel: ChannelInfo
) -> DecisionInfo | None:
    """A running plan whose candidate the channel no longer serves (promoted or ended by hand,
    or replaced) is closed with a decision saying so; None when it still runs."""
    if channel.candidate_version_id == plan.candidate_version_id:
        return None
    promoted = channel.production_version_id == plan.candidate_version_id
    decision = "promote" if promoted else "rollback"
    reason = (
        "the candidate was made production by hand"
        if promoted
        else "the channel no longer serves the candidate (canary ended or replaced by hand)"
    )
    return _record(session, actor, plan, decision, reason, {}, utcnow())


def _record(
    session: Session,
    actor: Actor,
    plan: CanaryInfo,
    decision: str,
    reason: str,
    evidence: dict[str, Any],
    now: datetime,
    **move: Any,
) -> DecisionInfo:
    """Move the plan (finishing it on promote/rollback), store the decision, audit it."""
    if decision in ("promote", "rollback"):
        move.update(status="promoted" if decision == "promote" else "rolled_back", finished_at=now)
    if move:
        repo.move_canary(session=session, canary_id=plan.id, expected_step=plan.step_index, **move)
    row = repo.add_decision(
        session=session, canary=plan, decision=decision, reason=reason, evidence=evidence,
        actor=actor.name,
    )  # fmt: skip
    audit(
        session, actor, "canary.decide", "channel", plan.channel_slug,
        canary_id=plan.id, decision_id=row.id, decision=decision, step=plan.step_index + 1,
        traffic=plan.traffic, version_id=plan.candidate_version_id, reason=reason,
    )  # fmt: skip
    return row


@action("canary.start", role="manager")
def start_canary_plan(
    *,
    session: Session,
    actor: Actor,
    slug: str,
    version_id: int,
    steps: Iterable[float] | str | None = None,
    min_requests: int = DEFAULT_MIN_REQUESTS,
    min_seconds: int = DEFAULT_MIN_SECONDS,
    max_error_increase: float = DEFAULT_MAX_ERROR_INCREASE,
    max_p95_increase: float = DEFAULT_MAX_P95_INCREASE,
    reason: str = "",
    override_reason: str = "",
) -> CanaryInfo:
    """Put a version in a stepped canary: its first step's share now, the controller decides the
    rest (advance, hold, roll back, promote at 100 %). The promotion gate judges the version
    first (channel.start_canary); a manager may override a refusal with `override_reason`."""
    values = parse_steps(steps)
    _check_limits(min_requests, min_seconds, max_error_increase, max_p95_increase)
    channel = channel_repo.get_channel(session=session, slug=slug)
    if channel.production_version_id is None:
        raise ConflictError(f"channel {slug!r} serves no production version to compare with")
    refuse_production(channel, version_id)
    running = repo.running_canary(session=session, channel_id=channel.id)
    if running is not None and close_if_abandoned(session, actor, running, channel) is None:
        raise ConflictError(
            f"channel {slug!r} already runs a canary of version {running.candidate_version_id} "
            f"({running.step_label}); end it or let the controller finish it first"
        )
    start_canary(
        session=session, actor=actor, slug=slug, version_id=version_id,
        traffic=values[0] / 100.0, reason=reason or f"canary step 1 of {len(values)}",
        override_reason=override_reason,
    )  # fmt: skip
    plan = repo.create_canary(
        session=session, channel_id=channel.id, candidate_version_id=version_id,
        production_version_id=channel.production_version_id, steps=values,
        min_requests=min_requests, min_seconds=min_seconds,
        max_error_increase=max_error_increase, max_p95_increase=max_p95_increase,
        started_by=actor.name, reason=reason.strip(),
    )  # fmt: skip
    audit(
        session, actor, "canary.start", "channel", slug,
        canary_id=plan.id, version_id=version_id, steps=values, min_requests=min_requests,
        min_seconds=min_seconds, max_error_increase=max_error_increase,
        max_p95_increase=max_p95_increase, reason=reason.strip(),
    )  # fmt: skip
    return plan


@action("canary.decide", role="manager")
def decide_canary(
    *,
    session: Session,
    actor: Actor,
    canary_id: int,
    step_index: int,
    decision: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> DecisionInfo:
    """Record a decision on a running canary's current step `step_index` and apply it: advance
    (next step's share), promote (production, through channel.promote), rollback (through
    channel.end_canary) or hold (nothing changes)."""
    if decision not in CANARY_DECISIONS:
        raise RegistryError(f"a canary decision is one of {', '.join(CANARY_DECISIONS)}")
    if not reason.strip():
        raise RegistryError("a canary decision needs a reason")
    plan = repo.get_canary(session=session, canary_id=canary_id)
    if plan.status != "running":
        raise ConflictError(f"canary {canary_id} is {plan.status.replace('_', ' ')}: it is over")
    if step_index != plan.step_index:
        raise ConflictError(
            f"canary {canary_id} is at step {plan.step_index + 1}, not {step_index + 1}"
        )
    now = now or utcnow()
    channel = channel_repo.get_channel(session=session, slug=plan.channel_slug)
    serving = channel.candidate_version_id == plan.candidate_version_id
    common = dict(session=session, actor=actor, slug=plan.channel_slug, reason=reason)
    move: dict[str, Any] = {}
    if decision == "advance":
        if plan.is_last_step:
            raise RegistryError("at the last step a canary is promoted or rolled back")
        if not serving:
            raise ConflictError(f"channel {plan.channel_slug!r} no longer serves the candidate")
        share = plan.steps[plan.step_index + 1]
        start_canary(version_id=plan.candidate_version_id, traffic=share / 100.0, **common)
        move = dict(step_index=plan.step_index + 1, step_started_at=now,
                    previous_step_started_at=plan.step_started_at)  # fmt: skip
    elif decision == "promote" and channel.production_version_id != plan.candidate_version_id:
        promote_version(version_id=plan.candidate_version_id, **common)
    elif decision == "rollback" and serving:
        end_canary(**common)
    return _record(session, actor, plan, decision, reason.strip(), evidence or {}, now, **move)


@action("channel.restore", role="manager")
def restore_version(
    *, session: Session, actor: Actor, slug: str, version_id: int, reason: str
) -> ChannelInfo:
    """Make an earlier production version of the channel its production again in one step,
    ending any canary; the reason is required."""
    if not (reason or "").strip():
        raise RegistryError("a restore needs a reason")
    before = channel_repo.get_channel(session=session, slug=slug)
    refuse_production(before, version_id)
    if version_id not in served_versions(session=session, slug=slug):
        raise ConflictError(
            f"version {version_id} never served {slug!r} in production: promote it instead "
            "(restore only goes back to a version the timeline shows)"
        )
    plan = repo.running_canary(session=session, channel_id=before.id)
    if plan is not None:
        _record(session, actor, plan, "rollback",
                f"restore of version {version_id}: {reason.strip()}", {}, utcnow())  # fmt: skip
    if before.candidate_version_id is not None:
        channel_repo.set_candidate(session=session, slug=slug, version_id=None)
    info = channel_repo.promote_version(session=session, slug=slug, version_id=version_id)
    audit(
        session, actor, "channel.restore", "channel", slug,
        before=before.production_version_id, after=version_id, version_id=version_id,
        ended_canary={"version_id": before.candidate_version_id,
                      "traffic": before.candidate_traffic},
        reason=reason.strip(),
    )  # fmt: skip
    return info
