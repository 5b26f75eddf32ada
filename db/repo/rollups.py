"""Rollups: per channel, version, arm and time bucket, kept by the writers of the raw rows.

Callers hand over `RollupDelta`s whose histograms are already binned (the bins are the
serving side's business); this module only adds them to the stored rows, at every resolution,
in the caller's transaction. Pages and the controller read these rows, never raw predictions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import zip_longest
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from db.models import ROLLUP_RESOLUTIONS, Rollup

COUNTERS = ("requests", "errors", "simulated", "thumbs_up", "thumbs_down")
COUNTERS += ("annotated_right", "annotated_wrong")
HISTOGRAMS = ("latency_hist", "confidence_hist", "class_counts", "intensity_hist")
# Bucket keys per statement: well under SQLite's and PostgreSQL's bound-parameter limits.
KEYS_PER_STATEMENT = 500


@dataclass
class RollupDelta:
    """What to add to the bucket holding `at` for one channel, version and arm."""

    channel_id: int
    version_id: int
    arm: str
    at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    latency_sum_ms: float = 0.0
    histograms: dict[str, list[int]] = field(default_factory=dict)


def bucket_second(at: datetime, resolution_s: int) -> int:
    """Start of the `resolution_s` bucket holding `at`, in seconds since the epoch (the form a
    hot path keys on; `bucket_start` makes the datetime)."""
    seconds = int(
        at.timestamp()
    )  # an aware datetime's instant; a naive one is local, as in astimezone
    return seconds - seconds % resolution_s


def bucket_start(at: datetime, resolution_s: int) -> datetime:
    """Start of the `resolution_s` bucket holding `at` (UTC, aligned to the epoch)."""
    return datetime.fromtimestamp(bucket_second(at, resolution_s), UTC)


def add_list(total: list[int], more: list[int]) -> list[int]:
    """Element-wise sum; the shorter list is padded with zeros (a model with more classes)."""
    return [a + b for a, b in zip_longest(total, more, fillvalue=0)]


# A bucket's values, in the order the plain-SQL writer (db/repo/log_writes.py) reads them.
VALUES = (*COUNTERS, "latency_sum_ms", *HISTOGRAMS)


def merged_values(stored: Mapping[str, Any], delta: RollupDelta) -> dict[str, Any]:
    """A bucket's VALUES once `delta` is added to `stored` (missing or None values count as
    empty): the one rule both the ORM path and the plain-SQL writer apply."""
    merged: dict[str, Any] = {
        name: (stored.get(name) or 0) + delta.counts.get(name, 0) for name in COUNTERS
    }
    merged["latency_sum_ms"] = (stored.get("latency_sum_ms") or 0.0) + delta.latency_sum_ms
    for name in HISTOGRAMS:
        merged[name] = add_list(list(stored.get(name) or []), delta.histograms.get(name, []))
    return merged


def _merge(row: Rollup, delta: RollupDelta) -> None:
    stored = {name: getattr(row, name) for name in VALUES}
    for name, value in merged_values(stored, delta).items():
        setattr(row, name, value)


def _combine(deltas: Iterable[RollupDelta], resolution_s: int) -> dict[tuple, RollupDelta]:
    """Deltas for the same key and bucket summed in memory: one row touched per key."""
    combined: dict[tuple, RollupDelta] = {}
    for d in deltas:
        start = bucket_start(d.at, resolution_s)
        key = (d.channel_id, d.version_id, d.arm, start)
        if key not in combined:
            combined[key] = RollupDelta(d.channel_id, d.version_id, d.arm, start)
        total = combined[key]
        for name, value in d.counts.items():
            total.counts[name] = total.counts.get(name, 0) + value
        total.latency_sum_ms += d.latency_sum_ms
        for name, values in d.histograms.items():
            total.histograms[name] = add_list(total.histograms.get(name, []), values)
    return combined


def _zero_row(key: tuple) -> dict:
    channel_id, version_id, arm, resolution, start = key
    return dict(
        channel_id=channel_id, version_id=version_id, arm=arm,
        resolution_s=resolution, bucket_start=start,
        **{name: 0 for name in COUNTERS}, latency_sum_ms=0.0,
        **{name: [] for name in HISTOGRAMS},
    )  # fmt: skip


def _ensure_rows_pg(session: Session, keys: list[tuple]) -> None:
    """Create missing bucket rows, letting a concurrent writer's row win: without this, two
    transactions that both find no row both insert one and the second hits uq_rollups_key."""
    statement = pg_insert(Rollup).values([_zero_row(k) for k in keys])
    session.execute(statement.on_conflict_do_nothing(constraint="uq_rollups_key"))


def _locked_rows(session: Session, keys: list[tuple]) -> dict[tuple, Rollup]:
    """The stored rows of `keys`, read FOR UPDATE in key order (a no-op lock on SQLite)."""
    columns = (Rollup.channel_id, Rollup.version_id, Rollup.arm, Rollup.resolution_s)
    columns += (Rollup.bucket_start,)
    rows = session.scalars(
        select(Rollup)
        .where(tuple_(*columns).in_(keys))
        .order_by(*columns)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {(r.channel_id, r.version_id, r.arm, r.resolution_s, r.bucket_start): r for r in rows}


def rollup_work(deltas: Iterable[RollupDelta]) -> dict[tuple, RollupDelta]:
    """The deltas summed per stored row: (channel, version, arm, resolution, bucket start) →
    what to add to it, in key order (the order writers lock rows in)."""
    return dict(
        sorted(
            ((c, v, a, resolution, b), delta)
            for resolution in ROLLUP_RESOLUTIONS
            for (c, v, a, b), delta in _combine(deltas, resolution).items()
        )
    )


def add_to_rollups(*, session: Session, deltas: list[RollupDelta]) -> int:
    """Add `deltas` to their buckets at every resolution; returns the rows touched.

    Call it after the transaction has written something (the prediction insert), so that on
    SQLite it already holds the write lock and no other writer interleaves this
    read-modify-write. On PostgreSQL missing rows are first inserted with ON CONFLICT DO
    NOTHING, then the rows are read with SELECT … FOR UPDATE, locked in key order (no
    deadlock between two writers touching the same buckets)."""
    work = rollup_work(deltas)
    if not work:
        return 0
    keys = list(work)
    found: dict[tuple, Rollup] = {}
    for i in range(0, len(keys), KEYS_PER_STATEMENT):  # in key order: locks are taken in order
        chunk = keys[i : i + KEYS_PER_STATEMENT]
        if session.get_bind().dialect.name == "postgresql":
            _ensure_rows_pg(session, chunk)
        found.update(_locked_rows(session, chunk))
    for key, delta in work.items():
        row = found.get(key)
        if row is None:
            row = Rollup(**_zero_row(key))
            session.add(row)
        _merge(row, delta)
    session.flush()
    return len(work)
