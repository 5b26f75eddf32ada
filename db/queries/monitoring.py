"""Live monitoring read model: a channel's rollups over a window, per arm and display bucket.

Reads only the `rollups` table (never raw predictions). Histograms come back summed but not
interpreted: percentiles, intervals and drift are computed by core.ml.monitoring_stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Channel, Rollup, utcnow
from db.repo.rollups import COUNTERS, HISTOGRAMS, add_list, bucket_start


@dataclass(frozen=True)
class Window:
    """A monitoring window: how far back, which stored resolution, how wide a drawn bucket."""

    name: str
    span: timedelta
    resolution_s: int
    bucket_s: int


WINDOWS = {
    w.name: w
    for w in (
        Window("1 h", timedelta(hours=1), 60, 60),
        Window("24 h", timedelta(hours=24), 60, 15 * 60),
        Window("7 d", timedelta(days=7), 3600, 3600),
        Window("30 d", timedelta(days=30), 3600, 6 * 3600),
    )
}
DEFAULT_WINDOW = "24 h"


@dataclass
class Signals:
    """Summed rollups of one arm over one bucket (or the whole window)."""

    requests: int = 0
    errors: int = 0
    simulated: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    annotated_right: int = 0
    annotated_wrong: int = 0
    latency_sum_ms: float = 0.0
    latency_hist: list[int] = field(default_factory=list)
    confidence_hist: list[int] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    intensity_hist: list[int] = field(default_factory=list)
    versions: set[int] = field(default_factory=set)

    def add(self, row: Rollup) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + (getattr(row, name) or 0))
        self.latency_sum_ms += row.latency_sum_ms or 0.0
        for name in HISTOGRAMS:
            setattr(self, name, add_list(getattr(self, name), list(getattr(row, name) or [])))
        self.versions.add(row.version_id)


@dataclass
class ArmSeries:
    """One arm over a window: the whole-window totals and one `Signals` per drawn bucket."""

    arm: str
    total: Signals
    buckets: dict[datetime, Signals]


@dataclass(frozen=True)
class ChannelMonitoring:
    window: Window
    since: datetime
    until: datetime
    arms: dict[str, ArmSeries]


def channel_monitoring(
    *, session: Session, channel_id: int, window: str = DEFAULT_WINDOW, now: datetime | None = None
) -> ChannelMonitoring:
    """Rollups of `channel_id` over `window` (a key of WINDOWS), per arm and drawn bucket."""
    w = WINDOWS[window]
    until = (now or utcnow()).astimezone(UTC)
    since = bucket_start(until - w.span, w.bucket_s) + timedelta(seconds=w.bucket_s)
    rows = session.scalars(
        select(Rollup).where(
            Rollup.channel_id == channel_id,
            Rollup.resolution_s == w.resolution_s,
            Rollup.bucket_start >= since,
        )
    )
    arms: dict[str, ArmSeries] = {}
    for row in rows:
        series = arms.setdefault(row.arm, ArmSeries(row.arm, Signals(), {}))
        series.total.add(row)
        start = bucket_start(row.bucket_start, w.bucket_s)
        series.buckets.setdefault(start, Signals()).add(row)
    return ChannelMonitoring(w, since, until, arms)


def recent_buckets(
    *,
    session: Session,
    channel_id: int,
    arm: str,
    bucket_s: int,
    count: int,
    now: datetime | None = None,
) -> list[tuple[datetime, Signals]]:
    """The last `count` complete buckets of `bucket_s` seconds for one arm, oldest first, each
    summed from minute rollups (a bucket with no traffic is an empty `Signals`)."""
    end = bucket_start((now or utcnow()).astimezone(UTC), bucket_s)
    starts = [end - timedelta(seconds=bucket_s * i) for i in range(count, 0, -1)]
    buckets = {start: Signals() for start in starts}
    rows = session.scalars(
        select(Rollup).where(
            Rollup.channel_id == channel_id,
            Rollup.arm == arm,
            Rollup.resolution_s == 60,
            Rollup.bucket_start >= starts[0],
            Rollup.bucket_start < end,
        )
    )
    for row in rows:
        buckets[bucket_start(row.bucket_start, bucket_s)].add(row)
    return list(buckets.items())


@dataclass(frozen=True)
class LiveObjectives:
    """What the controller checks for one active channel that serves a version."""

    channel_id: int
    slug: str
    production_version_id: int
    candidate_version_id: int | None
    slo_min_accuracy: float | None
    slo_min_feedback: int
    slo_max_p95_ms: float | None
    slo_max_error_rate: float | None
    slo_max_drift_psi: float | None
    alert_m: int
    alert_n: int
    drift_min_count: int
    webhook_url: str | None


def live_objectives(*, session: Session) -> list[LiveObjectives]:
    """Every active channel with a production version, and its live SLOs."""
    rows = session.scalars(
        select(Channel)
        .where(Channel.status == "active", Channel.production_version_id.is_not(None))
        .order_by(Channel.slug)
    )
    return [
        LiveObjectives(
            r.id,
            r.slug,
            r.production_version_id,
            r.candidate_version_id,
            r.slo_min_accuracy,
            r.slo_min_feedback,
            r.slo_max_p95_ms,
            r.slo_max_error_rate,
            r.slo_max_drift_psi,
            r.alert_m,
            r.alert_n,
            r.drift_min_count,
            r.webhook_url,
        )  # fmt: skip
        for r in rows
    ]
