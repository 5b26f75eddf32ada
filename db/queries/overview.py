"""Per-channel health for the overview: serving versions, live traffic, feedback, jobs, trends."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from db.models import (
    ACTIVE_JOB_STATUSES,
    Channel,
    Feedback,
    Model,
    ModelVersion,
    Prediction,
    TrainingJob,
    utcnow,
)


@dataclass(frozen=True)
class ChannelHealth:
    id: int
    slug: str
    name: str
    kind: str
    status: str
    status_reason: str
    model_name: str | None
    production_version_id: int | None
    production_version: int | None
    production_accuracy: float | None
    candidate_version_id: int | None
    candidate_version: int | None
    candidate_traffic: float
    slo_min_accuracy: float | None
    slo_max_p95_ms: float | None
    requests_24h: int = 0
    p95_latency_ms: float | None = None
    feedback_24h: int = 0
    thumbs_up_share: float | None = None
    pending_feedback: int = 0
    active_jobs: int = 0

    @property
    def slo_misses(self) -> list[str]:
        """Human-readable reasons the channel misses its SLOs (empty when it meets them)."""
        misses = []
        if self.slo_min_accuracy is not None and (
            self.production_accuracy is None or self.production_accuracy < self.slo_min_accuracy
        ):
            shown = (
                "none" if self.production_accuracy is None else f"{self.production_accuracy:.1%}"
            )
            misses.append(f"accuracy {shown} < {self.slo_min_accuracy:.1%}")
        if (
            self.slo_max_p95_ms is not None
            and self.p95_latency_ms is not None
            and self.p95_latency_ms > self.slo_max_p95_ms
        ):
            misses.append(f"p95 {self.p95_latency_ms:.0f} ms > {self.slo_max_p95_ms:.0f} ms")
        return misses


@dataclass(frozen=True)
class TrendPoint:
    channel_id: int
    hour: str
    requests: int
    mean_latency_ms: float


def _channel_rows(session: Session) -> list:
    prod, cand = aliased(ModelVersion), aliased(ModelVersion)
    query = (
        select(Channel, Model.name, prod.version, prod.accuracy, cand.version)
        .outerjoin(Model, Model.id == Channel.model_id)
        .outerjoin(prod, prod.id == Channel.production_version_id)
        .outerjoin(cand, cand.id == Channel.candidate_version_id)
        .order_by(Channel.slug)
    )
    return list(session.execute(query))


def _p95_latency(session: Session, channel_id: int, since: datetime, count: int) -> float | None:
    """Nearest-rank p95 in SQL: skip the slowest 5 % and read the next value (no rows fetched)."""
    if count == 0:
        return None
    skip = count - math.ceil(0.95 * count)
    return session.scalar(
        select(Prediction.latency_ms)
        .where(Prediction.channel_id == channel_id, Prediction.created_at >= since)
        .order_by(Prediction.latency_ms.desc())
        .limit(1)
        .offset(skip)
    )


def _traffic(session: Session, channel_id: int, since: datetime) -> tuple[int, float | None]:
    count = session.scalar(
        select(func.count())
        .select_from(Prediction)
        .where(Prediction.channel_id == channel_id, Prediction.created_at >= since)
    )
    return count or 0, _p95_latency(session, channel_id, since, count or 0)


def _feedback_counts(session: Session, since: datetime) -> dict[int, tuple[int, int]]:
    """channel id -> (feedback in window, thumbs-up in window)."""
    rows = session.execute(
        select(
            Feedback.channel_id,
            func.count(),
            func.sum(case((Feedback.rating == "up", 1), else_=0)),
        )
        .where(Feedback.created_at >= since)
        .group_by(Feedback.channel_id)
    )
    return {channel_id: (n, int(up or 0)) for channel_id, n, up in rows}


def _pending_counts(session: Session, channel_ids: list[int]) -> dict[int, int]:
    counts = {}
    for channel_id in channel_ids:
        counts[channel_id] = session.scalar(
            select(func.count())
            .select_from(Feedback)
            .where(Feedback.channel_id == channel_id, Feedback.review_status == "pending")
        )
    return counts


def _active_job_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(TrainingJob.channel_id, func.count())
        .where(TrainingJob.status.in_(ACTIVE_JOB_STATUSES), TrainingJob.channel_id.is_not(None))
        .group_by(TrainingJob.channel_id)
    )
    return dict(rows.tuples().all())


def channel_health(
    *, session: Session, window: timedelta = timedelta(hours=24)
) -> list[ChannelHealth]:
    """One row per channel with its serving versions and the last `window` of live numbers."""
    since = utcnow() - window
    rows = _channel_rows(session)
    feedback = _feedback_counts(session, since)
    pending = _pending_counts(session, [row[0].id for row in rows])
    jobs = _active_job_counts(session)
    result = []
    for ch, model_name, prod_v, prod_acc, cand_v in rows:
        requests, p95 = _traffic(session, ch.id, since)
        n_feedback, n_up = feedback.get(ch.id, (0, 0))
        result.append(
            ChannelHealth(
                ch.id,
                ch.slug,
                ch.name,
                ch.kind,
                ch.status,
                ch.status_reason,
                model_name,
                ch.production_version_id,
                prod_v,
                prod_acc,
                ch.candidate_version_id,
                cand_v,
                ch.candidate_traffic,
                ch.slo_min_accuracy,
                ch.slo_max_p95_ms,
                requests,
                p95,
                n_feedback,
                (n_up / n_feedback) if n_feedback else None,
                pending.get(ch.id, 0),
                jobs.get(ch.id, 0),
            )
        )
    return result


def _hour_bucket(session: Session, column):
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:00", column)
    return func.to_char(func.date_trunc("hour", column), "YYYY-MM-DD HH24:00")


def hourly_traffic(
    *, session: Session, hours: int = 24, channel_ids: tuple[int, ...] = ()
) -> list[TrendPoint]:
    """Requests and mean latency per channel and hour (UTC) over the last `hours`."""
    since = utcnow() - timedelta(hours=hours)
    if not channel_ids:
        channel_ids = tuple(session.scalars(select(Channel.id)))
    points: list[TrendPoint] = []
    for channel_id in channel_ids:
        bucket = _hour_bucket(session, Prediction.created_at).label("hour")
        rows = session.execute(
            select(bucket, func.count(), func.avg(Prediction.latency_ms))
            .where(Prediction.channel_id == channel_id, Prediction.created_at >= since)
            .group_by(bucket)
            .order_by(bucket)
        )
        points += [TrendPoint(channel_id, h, n, float(lat or 0.0)) for h, n, lat in rows]
    return points
