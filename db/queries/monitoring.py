"""Live monitoring read model: a channel's rollups over a window, per arm and display bucket.

Reads only the `rollups` table (never raw predictions). Histograms come back summed but not
interpreted: percentiles, intervals and drift are computed by core.ml.monitoring_stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import reduce
from operator import add

from sqlalchemy import Row, and_, or_, select
from sqlalchemy.orm import Session

from db.models import ROLLUP_RESOLUTIONS, Channel, ModelVersion, Rollup, utcnow
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
_COLUMNS = tuple(Rollup.__table__.columns.keys())  # the order of a `rollup_rows` row


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

    @classmethod
    def of_rows(cls, rows: list[Row]) -> Signals:
        """The sum of rows of `rollup_rows`, column by column: zip and sum run in C, which a
        page summing thousands of minute rollups needs."""
        columns = dict(zip(_COLUMNS, zip(*rows, strict=True), strict=False))
        signals = cls(versions=set(columns.get("version_id", ())))
        for name in COUNTERS:
            setattr(signals, name, sum(v or 0 for v in columns.get(name, ())))
        signals.latency_sum_ms = float(sum(v or 0.0 for v in columns.get("latency_sum_ms", ())))
        for name in HISTOGRAMS:
            lists = [v or [] for v in columns.get(name, ())]
            if len({len(v) for v in lists}) == 1:
                setattr(signals, name, [sum(bin_) for bin_ in zip(*lists, strict=True)])
            else:
                setattr(signals, name, reduce(add_list, lists, []))
        return signals

    def add(self, row: Rollup | Row) -> None:
        """Add one stored rollup (an ORM object or a row of `rollup_rows`)."""
        self._sum(row)
        self.versions.add(row.version_id)

    def merge(self, other: Signals) -> None:
        """Add another sum (a drawn bucket into its window's total)."""
        self._sum(other)
        self.versions |= other.versions

    def _sum(self, more: Rollup | Row | Signals) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + (getattr(more, name) or 0))
        self.latency_sum_ms += more.latency_sum_ms or 0.0
        for name in HISTOGRAMS:
            total, values = getattr(self, name), getattr(more, name) or []
            # Same-length histograms are the rule; map() is ~3x faster than add_list's indexing.
            same = len(total) == len(values)
            setattr(self, name, list(map(add, total, values)) if same else add_list(total, values))


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
    since = window_start(w, until)
    rows = rollup_rows(
        session,
        Rollup.channel_id == channel_id,
        Rollup.resolution_s == w.resolution_s,
        Rollup.bucket_start >= since,
    )
    grouped: dict[str, dict[datetime, list[Row]]] = {}
    for row in rows:
        start = bucket_start(row.bucket_start, w.bucket_s)
        grouped.setdefault(row.arm, {}).setdefault(start, []).append(row)
    arms: dict[str, ArmSeries] = {}
    for arm, buckets in grouped.items():
        series = arms[arm] = ArmSeries(arm, Signals(), {})
        for start, bucket_rows in buckets.items():
            series.buckets[start] = Signals.of_rows(bucket_rows)
            series.total.merge(series.buckets[start])
    return ChannelMonitoring(w, since, until, arms)


def window_start(w: Window, until: datetime) -> datetime:
    """The first drawn bucket of `w` ending at `until`."""
    return bucket_start(until - w.span, w.bucket_s) + timedelta(seconds=w.bucket_s)


def rollup_rows(session: Session, *conditions) -> list[Row]:
    """Stored rollups as plain rows: they are only read, so no ORM objects are built."""
    return list(session.execute(select(Rollup.__table__).where(*conditions)))


def window_totals(
    *, session: Session, channel_id: int, window: str = DEFAULT_WINDOW, now: datetime | None = None
) -> dict[str, Signals]:
    """Per arm, the sums of `channel_monitoring(...).arms[arm].total`, read from hour rollups
    for the whole hours inside the window and from finer ones only at its two ragged ends
    (hour rows are the sums of their minute rows), so 24 h is ~50 rows per arm, not 1,440."""
    w = WINDOWS[window]
    until = (now or utcnow()).astimezone(UTC)
    since, coarse = window_start(w, until), max(ROLLUP_RESOLUTIONS)
    first = bucket_start(since + timedelta(seconds=coarse - 1), coarse)  # first whole hour
    last = max(bucket_start(until, coarse), first)  # the hour still filling
    which = Rollup.resolution_s == w.resolution_s
    if w.resolution_s < coarse:
        ends = and_(which, or_(Rollup.bucket_start < first, Rollup.bucket_start >= last))
        hours = and_(
            Rollup.resolution_s == coarse, Rollup.bucket_start >= first, Rollup.bucket_start < last
        )
        which = or_(ends, hours)
    rows = rollup_rows(
        session, Rollup.channel_id == channel_id, Rollup.bucket_start >= since, which
    )
    by_arm: dict[str, list[Row]] = {}
    for row in rows:
        by_arm.setdefault(row.arm, []).append(row)
    return {arm: Signals.of_rows(arm_rows) for arm, arm_rows in by_arm.items()}


def recent_buckets(
    *,
    session: Session,
    channel_id: int,
    arm: str,
    bucket_s: int,
    count: int,
    version_id: int | None = None,
    now: datetime | None = None,
) -> list[tuple[datetime, Signals]]:
    """The last `count` complete buckets of `bucket_s` seconds for one arm, oldest first, each
    summed from minute rollups (a bucket with no traffic is an empty `Signals`); only the traffic
    that `version_id` answered when given."""
    end = bucket_start((now or utcnow()).astimezone(UTC), bucket_s)
    starts = [end - timedelta(seconds=bucket_s * i) for i in range(count, 0, -1)]
    buckets = {start: Signals() for start in starts}
    rows = rollup_rows(
        session,
        Rollup.channel_id == channel_id,
        Rollup.arm == arm,
        Rollup.resolution_s == 60,
        Rollup.bucket_start >= starts[0],
        Rollup.bucket_start < end,
        *([Rollup.version_id == version_id] if version_id is not None else []),
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
    production_version: int  # its number, as alerts name it ("v3")
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
    rows = session.execute(
        select(Channel, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == Channel.production_version_id)
        .where(Channel.status == "active")
        .order_by(Channel.slug)
    ).tuples()
    return [
        LiveObjectives(
            r.id,
            r.slug,
            r.production_version_id,
            number,
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
        for r, number in rows
    ]
