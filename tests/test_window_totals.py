"""window_totals (hour rollups inside the window, finer ones at its ends) sums exactly what
channel_monitoring's per-arm totals sum from the window's own resolution."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from db.engine import session_scope
from db.queries.monitoring import WINDOWS, Signals, channel_monitoring, window_totals
from db.repo.channels import ChannelSpec, create_channel
from db.repo.rollups import RollupDelta, add_to_rollups
from tests.registry_helpers import add_dataset, add_model_with_version

pytestmark = pytest.mark.both_databases

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def _deltas(channel_id: int, version_id: int, n: int) -> list[RollupDelta]:
    """Random requests, feedback and histograms over 40 hours on both arms."""
    rng = random.Random(3)
    return [
        RollupDelta(
            channel_id, version_id, rng.choice(["production", "candidate"]),
            START + timedelta(seconds=rng.uniform(0, 40 * 3600)),
            counts={"requests": 1, "simulated": rng.random() < 0.3,
                    "thumbs_up": rng.random() < 0.2, "annotated_wrong": rng.random() < 0.1},
            latency_sum_ms=rng.uniform(1, 50),
            histograms={"latency_hist": [rng.randrange(3) for _ in range(40)],
                        "class_counts": [rng.randrange(2) for _ in range(10)]},
        )
        for _ in range(n)
    ]  # fmt: skip


def _sum_ms(signals: Signals) -> float:
    """The latency sum, set to zero in `signals` so that the rest compares exactly."""
    value, signals.latency_sum_ms = signals.latency_sum_ms, 0.0
    return value


def test_window_totals_equal_channel_monitoring_totals(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel, _ = create_channel(session=s, slug="web", spec=ChannelSpec(name="Web", kind="web"))
        other, _ = create_channel(session=s, slug="app", spec=ChannelSpec(name="App", kind="web"))
        add_to_rollups(session=s, deltas=_deltas(channel.id, version.id, 3000))
        add_to_rollups(session=s, deltas=_deltas(other.id, version.id, 500))
    # Ends on and off the hour, inside the traffic (rows after the end count too).
    ends = [START + timedelta(hours=h, minutes=m) for h, m in ((25, 0), (30, 17), (39, 59))]
    with session_scope() as s:
        for now in ends:
            for window in WINDOWS:
                expected = channel_monitoring(
                    session=s, channel_id=channel.id, window=window, now=now
                )
                totals = window_totals(session=s, channel_id=channel.id, window=window, now=now)
                wanted = {arm: a.total for arm, a in expected.arms.items()}
                # The float sum of latencies may differ in its last bits (another order).
                assert {a: _sum_ms(t) for a, t in totals.items()} == pytest.approx(
                    {a: _sum_ms(t) for a, t in wanted.items()}, rel=1e-9
                ), (window, now)
                assert totals == wanted, (window, now)
                assert sum(t.requests for t in totals.values()) > 0
