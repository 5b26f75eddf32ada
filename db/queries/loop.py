"""The loop in one place: per channel, the six stages from alerts to production with their
counts, read in a handful of grouped queries (never per-item scans)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    ACTIVE_JOB_STATUSES,
    AuditEvent,
    Feedback,
    GateDecision,
    ModelVersion,
    TrainingJob,
    utcnow,
)
from db.queries.channel_rows import serving_rows
from db.queries.counting import capped_count, pending_feedback
from db.repo.alerts import AlertInfo
from db.repo.feedback import WAITING_FOR_A_RETRAIN


@dataclass(frozen=True)
class RetrainState:
    job_id: int
    status: str
    progress: float
    current_epoch: int
    total_epochs: int
    then_canary: bool


@dataclass(frozen=True)
class LastRetrain:
    """The channel's newest retrain when it ended in the last day without a version going on
    (failed, refused by the gate, or left out of a canary) and its version does not serve the
    channel (promoted by hand since): what the Retrain card says of it."""

    job_id: int
    outcome: str  # failed | cancelled | lost | refused | no canary | ready
    version: int | None  # the version it produced
    why: list[str]  # the gate's failed rules, or the job's error


LAST_RETRAIN_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class ChannelLoop:
    id: int
    slug: str
    name: str
    model_id: int | None
    model_name: str | None
    production_version_id: int | None
    production_version: int | None
    production_since: datetime | None
    candidate_version_id: int | None
    candidate_version: int | None
    candidate_traffic: float
    alerts: list[AlertInfo] = field(default_factory=list)
    to_review: int = 0
    to_review_down: int = 0
    annotated_not_learned: int = 0
    retrain: RetrainState | None = None
    last_retrain: LastRetrain | None = None


def _pending(session: Session, channel_ids: list[int]) -> dict[int, dict[str, int]]:
    """channel id -> its pending items and, of them, the thumbs-down ones, as ChannelLoop's
    fields; each counted up to COUNT_CAP."""
    return {
        c: {
            "to_review": pending_feedback(session, c),
            "to_review_down": pending_feedback(session, c, "down"),
        }
        for c in channel_ids
    }


def _not_learned(session: Session, model_ids: set[int]) -> dict[int, int]:
    """model id -> annotated items no version of it has learned (what a retrain adds), counted
    up to COUNT_CAP; the same rows as `count_training_items(unused_only=True)`."""
    counts = {}
    for model_id in model_ids:
        versions = select(ModelVersion.id).where(ModelVersion.model_id == model_id)
        query = select(Feedback.id).where(
            *WAITING_FOR_A_RETRAIN,
            Feedback.review_status.in_(("confirmed", "corrected")),
            Feedback.version_id.in_(versions),
        )
        counts[model_id] = capped_count(session, query)
    return counts


def _latest_jobs(
    session: Session, serving: dict[int, set[int]]
) -> tuple[dict[int, RetrainState], dict[int, LastRetrain]]:
    """channel id -> its newest job while it runs or awaits its canary; and channel id -> the
    newest job when it ended in the last day without a version going on. `serving`: channel
    id -> the versions it serves (production, candidate)."""
    latest = (
        select(TrainingJob.channel_id, func.max(TrainingJob.id).label("job_id"))
        .where(TrainingJob.channel_id.is_not(None))
        .group_by(TrainingJob.channel_id)
        .subquery()
    )
    rows = session.execute(
        select(TrainingJob).join(latest, latest.c.job_id == TrainingJob.id)
    ).scalars()
    running, ended = {}, {}
    since = utcnow() - LAST_RETRAIN_WINDOW
    for j in rows:
        if j.status in ACTIVE_JOB_STATUSES or (
            j.status == "succeeded" and j.then_canary and j.handed_to_canary_at is None
        ):
            running[j.channel_id] = RetrainState(
                j.id, j.status, j.progress, j.current_epoch, j.total_epochs, j.then_canary
            )  # fmt: skip
        elif j.finished_at is not None and j.finished_at >= since:
            last = _ended(session, j, serving.get(j.channel_id, set()))
            if last is not None:
                ended[j.channel_id] = last
    return running, ended


def _ended(session: Session, job: TrainingJob, serving: set[int]) -> LastRetrain | None:
    """What became of a job that is over; None when its version went into a canary or serves
    the channel now, promoted by hand (the Canary and Production cards show it from there)."""
    if job.status != "succeeded" or job.result_version_id is None:
        return LastRetrain(job.id, job.status, None, [job.error] if job.error else [])
    if job.result_version_id in serving:
        return None
    version = session.scalar(
        select(ModelVersion.version).where(ModelVersion.id == job.result_version_id)
    )
    if not job.then_canary:
        return LastRetrain(job.id, "ready", version, [])
    decision = session.scalars(
        select(GateDecision)
        .where(GateDecision.channel_id == job.channel_id,
               GateDecision.version_id == job.result_version_id)
        .order_by(GateDecision.id.desc())
        .limit(1)
    ).first()  # fmt: skip
    if decision is None:  # the hand-over failed before the gate (the controller logged why)
        return LastRetrain(job.id, "no canary", version, [])
    if decision.outcome == "refused":
        return LastRetrain(job.id, "refused", version, [str(f) for f in decision.failed])
    return None


def _production_since(session: Session) -> dict[str, datetime]:
    rows = session.execute(
        select(AuditEvent.object_id, func.max(AuditEvent.created_at))
        .where(AuditEvent.object_type == "channel",
               AuditEvent.action.in_(("channel.promote", "channel.restore")))
        .group_by(AuditEvent.object_id)
    )  # fmt: skip
    return dict(rows.tuples().all())


def channel_loops(*, session: Session) -> list[ChannelLoop]:
    """Every channel's loop, ordered by slug."""
    rows = serving_rows(session)
    model_ids = {r.channel.model_id for r in rows if r.channel.model_id is not None}
    pending = _pending(session, [r.channel.id for r in rows])
    learned = _not_learned(session, model_ids)
    serving = {
        r.channel.id: {r.channel.production_version_id, r.channel.candidate_version_id} - {None}
        for r in rows
    }
    jobs, ended = _latest_jobs(session, serving)
    since = _production_since(session)
    return [
        ChannelLoop(
            **r.serving_fields(),
            model_id=r.channel.model_id,
            model_name=r.model_name,
            production_since=since.get(r.channel.slug),
            alerts=r.open_alerts,
            **pending[r.channel.id],
            annotated_not_learned=learned.get(r.channel.model_id, 0),
            retrain=jobs.get(r.channel.id),
            last_retrain=ended.get(r.channel.id),
        )
        for r in rows
    ]
