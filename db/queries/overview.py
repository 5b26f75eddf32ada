"""Per-channel health for the overview: serving versions, live signals from rollups, open
alerts, feedback to review, active retrains, hourly trends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    ACTIVE_JOB_STATUSES,
    Rollup,
    TrainingJob,
    utcnow,
)
from db.queries.channel_rows import serving_rows
from db.queries.counting import pending_feedback
from db.queries.monitoring import Signals, window_totals
from db.repo.alerts import AlertInfo


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
    slo_min_feedback: int
    slo_max_p95_ms: float | None
    slo_max_error_rate: float | None
    # The last 24 h of live signals per arm, summed from rollups.
    live: dict[str, Signals] = field(default_factory=dict)
    open_alerts: list[AlertInfo] = field(default_factory=list)
    pending_feedback: int = 0
    active_jobs: int = 0

    @property
    def production_live(self) -> Signals:
        return self.live.get("production", Signals())

    @property
    def requests_24h(self) -> int:
        return sum(s.requests for s in self.live.values())

    @property
    def simulated_24h(self) -> int:
        """Of `requests_24h`, those marked simulated (the same rollups, the same window)."""
        return sum(s.simulated for s in self.live.values())


@dataclass(frozen=True)
class TrendPoint:
    channel_id: int
    hour: datetime
    requests: int
    simulated: int


def _pending_counts(session: Session, channel_ids: list[int]) -> dict[int, int]:
    """channel id -> pending feedback, counted up to COUNT_CAP (shown as "10,000+")."""
    return {channel_id: pending_feedback(session, channel_id) for channel_id in channel_ids}


def _active_job_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(TrainingJob.channel_id, func.count())
        .where(TrainingJob.status.in_(ACTIVE_JOB_STATUSES), TrainingJob.channel_id.is_not(None))
        .group_by(TrainingJob.channel_id)
    )
    return dict(rows.tuples().all())


def channel_health(*, session: Session, now: datetime | None = None) -> list[ChannelHealth]:
    """One row per channel: serving versions, the 24 h up to `now` of live signals from rollups,
    open alerts, feedback waiting for review and active retrains."""
    rows = serving_rows(session)
    pending = _pending_counts(session, [r.channel.id for r in rows])
    jobs = _active_job_counts(session)
    return [
        ChannelHealth(
            **r.serving_fields(),
            kind=r.channel.kind,
            status=r.channel.status,
            status_reason=r.channel.status_reason,
            model_name=r.model_name,
            production_accuracy=r.production_accuracy,
            slo_min_accuracy=r.channel.slo_min_accuracy,
            slo_min_feedback=r.channel.slo_min_feedback,
            slo_max_p95_ms=r.channel.slo_max_p95_ms,
            slo_max_error_rate=r.channel.slo_max_error_rate,
            live=window_totals(session=session, channel_id=r.channel.id, window="24 h", now=now),
            open_alerts=r.open_alerts,
            pending_feedback=pending.get(r.channel.id, 0),
            active_jobs=jobs.get(r.channel.id, 0),
        )
        for r in rows
    ]


def hourly_traffic(*, session: Session, hours: int = 24) -> list[TrendPoint]:
    """Requests (and how many were simulated) per channel and UTC hour, from hour rollups."""
    since = utcnow() - timedelta(hours=hours)
    rows = session.execute(
        select(Rollup.channel_id, Rollup.bucket_start, func.sum(Rollup.requests),
               func.sum(Rollup.simulated))
        .where(Rollup.resolution_s == 3600, Rollup.bucket_start >= since)
        .group_by(Rollup.channel_id, Rollup.bucket_start)
        .order_by(Rollup.bucket_start)
    )  # fmt: skip
    return [TrendPoint(c, hour, int(n or 0), int(sim or 0)) for c, hour, n, sim in rows]
