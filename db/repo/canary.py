"""Stepped canaries: their plan and state, the decisions taken on them, and the per-arm rollups
of one step (what the controller compares). Callers own the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.errors import ConflictError
from db.models import Canary, CanaryDecision, Channel, Rollup, utcnow
from db.queries.monitoring import Signals
from db.repo.lookup import must_exist
from db.repo.rollups import bucket_start


@dataclass(frozen=True)
class CanaryInfo:
    id: int
    channel_id: int
    channel_slug: str
    candidate_version_id: int
    production_version_id: int | None
    steps: list[float]  # candidate traffic in percent per step, ascending, the last is 100
    step_index: int
    step_started_at: datetime
    previous_step_started_at: datetime | None
    min_requests: int
    min_seconds: int
    max_error_increase: float
    max_p95_increase: float
    status: str
    started_by: str
    reason: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def traffic(self) -> float:
        """The current step's candidate share, 0-1."""
        return self.steps[self.step_index] / 100.0

    @property
    def is_last_step(self) -> bool:
        return self.step_index == len(self.steps) - 1

    @property
    def step_label(self) -> str:
        share = self.steps[self.step_index]
        return f"step {self.step_index + 1} of {len(self.steps)} ({share:g} %)"


@dataclass(frozen=True)
class DecisionInfo:
    id: int
    canary_id: int
    channel_id: int
    step_index: int
    traffic: float
    decision: str
    reason: str
    evidence: dict[str, Any]
    actor: str
    created_at: datetime


def _info(row: Canary, slug: str) -> CanaryInfo:
    return CanaryInfo(
        row.id, row.channel_id, slug, row.candidate_version_id, row.production_version_id,
        [float(s) for s in row.steps], row.step_index, row.step_started_at,
        row.previous_step_started_at, row.min_requests, row.min_seconds, row.max_error_increase,
        row.max_p95_increase, row.status, row.started_by, row.reason, row.created_at,
        row.finished_at,
    )  # fmt: skip


def _decision(row: CanaryDecision) -> DecisionInfo:
    return DecisionInfo(
        row.id, row.canary_id, row.channel_id, row.step_index, row.traffic, row.decision,
        row.reason, dict(row.evidence or {}), row.actor, row.created_at,
    )  # fmt: skip


def _select_canaries():
    return select(Canary, Channel.slug).join(Channel, Channel.id == Canary.channel_id)


def create_canary(
    *,
    session: Session,
    channel_id: int,
    candidate_version_id: int,
    production_version_id: int | None,
    steps: list[float],
    min_requests: int,
    min_seconds: int,
    max_error_increase: float,
    max_p95_increase: float,
    started_by: str,
    reason: str = "",
    now: datetime | None = None,
) -> CanaryInfo:
    """A running canary at its first step, started `now`."""
    row = Canary(
        channel_id=channel_id, candidate_version_id=candidate_version_id,
        production_version_id=production_version_id, steps=list(steps), step_index=0,
        step_started_at=now or utcnow(), min_requests=min_requests, min_seconds=min_seconds,
        max_error_increase=max_error_increase, max_p95_increase=max_p95_increase,
        status="running", started_by=started_by, reason=reason,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return get_canary(session=session, canary_id=row.id)


def get_canary(*, session: Session, canary_id: int) -> CanaryInfo:
    found = session.execute(_select_canaries().where(Canary.id == canary_id)).first()
    return _info(*must_exist(found, f"canary {canary_id}"))


def running_canary(*, session: Session, channel_id: int) -> CanaryInfo | None:
    """The channel's running canary, if any (at most one runs per channel)."""
    query = _select_canaries().where(Canary.channel_id == channel_id, Canary.status == "running")
    found = session.execute(query.order_by(Canary.id.desc())).first()
    return _info(*found) if found else None


def running_canaries(*, session: Session) -> list[CanaryInfo]:
    rows = session.execute(_select_canaries().where(Canary.status == "running").order_by(Canary.id))
    return [_info(*r) for r in rows]


def list_canaries(*, session: Session, channel_id: int, limit: int = 20) -> list[CanaryInfo]:
    """The channel's canaries, newest first."""
    query = _select_canaries().where(Canary.channel_id == channel_id)
    return [_info(*r) for r in session.execute(query.order_by(Canary.id.desc()).limit(limit))]


def move_canary(
    *, session: Session, canary_id: int, expected_step: int, **values: Any
) -> CanaryInfo:
    """Change a running canary that is still at `expected_step` (a conditional UPDATE: two
    controllers never both advance the same step)."""
    done = session.execute(
        update(Canary)
        .where(
            Canary.id == canary_id,
            Canary.status == "running",
            Canary.step_index == expected_step,
        )
        .values(**values)
    )
    if done.rowcount != 1:
        raise ConflictError(
            f"canary {canary_id} is no longer running at step {expected_step + 1}: "
            "someone decided it already"
        )
    return get_canary(session=session, canary_id=canary_id)


def add_decision(
    *,
    session: Session,
    canary: CanaryInfo,
    decision: str,
    reason: str,
    evidence: dict[str, Any],
    actor: str,
    now: datetime | None = None,
) -> DecisionInfo:
    """Record a decision on `canary` at the step it was taken on."""
    row = CanaryDecision(
        canary_id=canary.id, channel_id=canary.channel_id, step_index=canary.step_index,
        traffic=canary.traffic, decision=decision, reason=reason, evidence=evidence,
        actor=actor, created_at=now or utcnow(),
    )  # fmt: skip
    session.add(row)
    session.flush()
    return _decision(row)


def list_decisions(
    *,
    session: Session,
    channel_id: int | None = None,
    canary_id: int | None = None,
    limit: int = 100,
) -> list[DecisionInfo]:
    """Decisions, newest first, of one channel or one canary."""
    query = select(CanaryDecision).order_by(CanaryDecision.id.desc()).limit(limit)
    if channel_id is not None:
        query = query.where(CanaryDecision.channel_id == channel_id)
    if canary_id is not None:
        query = query.where(CanaryDecision.canary_id == canary_id)
    return [_decision(r) for r in session.scalars(query)]


def _minute_after(at: datetime) -> datetime:
    """The first whole minute bucket that starts at or after `at` (a bucket that began before
    the step holds traffic of the step before)."""
    start = bucket_start(at, 60)
    return start if start == at.astimezone(UTC) else start + timedelta(seconds=60)


def arm_signals(
    *,
    session: Session,
    channel_id: int,
    arm: str,
    version_id: int,
    since: datetime,
    until: datetime | None = None,
) -> Signals:
    """One arm's minute rollups of one version summed from `since` (rounded up to a whole
    minute) to `until` (exclusive; None = everything after)."""
    query = select(Rollup).where(
        Rollup.channel_id == channel_id,
        Rollup.arm == arm,
        Rollup.version_id == version_id,
        Rollup.resolution_s == 60,
        Rollup.bucket_start >= _minute_after(since),
    )
    if until is not None:
        query = query.where(Rollup.bucket_start < bucket_start(until, 60))
    total = Signals()
    for row in session.scalars(query):
        total.add(row)
    return total
