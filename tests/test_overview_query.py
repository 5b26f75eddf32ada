"""The Overview's live figures per channel: requests and how many of them were simulated are
summed over the same rollups of the same 24 h window (an hourly chart's whole hours are not
that window: its first, ragged hour would be missing from one count and not the other)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.engine import session_scope
from db.queries.overview import channel_health
from db.repo.rollups import RollupDelta, add_to_rollups
from tests.registry_helpers import serving_channel

NOW = datetime(2026, 11, 29, 16, 40, tzinfo=UTC)


def _requests(channel_id: int, version_id: int, at: datetime, n: int, simulated: bool):
    return [
        RollupDelta(channel_id, version_id, "production", at,
                    counts={"requests": 1, "simulated": simulated})
        for _ in range(n)
    ]  # fmt: skip


def test_simulated_requests_are_counted_over_the_same_window_as_all_requests(registry):
    with session_scope() as s:
        _, version, channel = serving_channel(s)
        deltas = [
            # In the window's first, ragged hour (its hour bucket starts before the window).
            *_requests(channel.id, version.id, NOW - timedelta(hours=23, minutes=45), 4, True),
            *_requests(channel.id, version.id, NOW - timedelta(hours=5), 6, True),
            *_requests(channel.id, version.id, NOW - timedelta(minutes=3), 2, False),
            # Before the window: neither count.
            *_requests(channel.id, version.id, NOW - timedelta(hours=30), 5, True),
        ]
        add_to_rollups(session=s, deltas=deltas)
    with session_scope() as s:
        (web,) = channel_health(session=s, now=NOW)
    assert (web.requests_24h, web.simulated_24h) == (12, 10)
