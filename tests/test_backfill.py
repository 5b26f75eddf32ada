"""The demo's backfill schedule: a daily rhythm, a round-the-clock drift episode, and what a
careful reviewer decides on each kind of feedback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from core.ops.backfill import (
    NIGHT_FLOOR,
    ChannelTraffic,
    DriftEpisode,
    daily_weight,
    past_prediction_id,
    request_times,
    schedule,
    verdict_for,
)

NOW = datetime(2025, 3, 10, 18, 30, tzinfo=UTC)


def test_daily_weight_peaks_in_the_afternoon_and_bottoms_out_at_night():
    at = [NOW.replace(hour=h, minute=0) for h in range(24)]
    weights = [daily_weight(t) for t in at]
    assert weights[14] == 1.0 and abs(weights[2] - NIGHT_FLOOR) < 1e-9
    assert max(weights) == weights[14] and min(weights) == weights[2]


def test_request_times_follow_the_rhythm_and_their_mean_rate():
    rng = np.random.default_rng(0)
    start = NOW - timedelta(days=7)
    times = request_times(100, start, NOW, rng, rhythm=True)
    assert abs(len(times) - 100 * 24 * 7) < 0.05 * 100 * 24 * 7
    assert times == sorted(times) and start <= times[0] and times[-1] < NOW
    afternoon = sum(13 <= t.hour < 16 for t in times)
    night = sum(1 <= t.hour < 4 for t in times)
    assert afternoon > 3.5 * night
    flat = request_times(100, start, NOW, rng, rhythm=False)
    assert 0.7 < sum(13 <= t.hour < 16 for t in flat) / sum(1 <= t.hour < 4 for t in flat) < 1.4


def test_schedule_adds_the_episode_to_its_channel_only():
    episode = DriftEpisode("web", hours=6, per_hour=150)
    rng = np.random.default_rng(1)
    web = schedule(ChannelTraffic("web", 240), episode, now=NOW, days=7, num_samples=50, rng=rng)
    mobile = schedule(ChannelTraffic("mobile", 240), episode, now=NOW, days=7, num_samples=50,
                      rng=rng)  # fmt: skip
    drifted = [r for r in web if r.drifted]
    assert not any(r.drifted for r in mobile)
    assert 700 < len(drifted) < 1100
    assert min(r.at for r in drifted) >= NOW - timedelta(hours=6)
    assert all(0 <= r.sample < 50 for r in web)
    assert [r.at for r in web] == sorted(r.at for r in web)


def test_past_prediction_ids_sort_by_their_time():
    earlier, later = NOW - timedelta(days=3), NOW - timedelta(days=2)
    assert len(past_prediction_id(earlier)) == 32
    assert past_prediction_id(earlier) < past_prediction_id(later)


def test_reviewer_confirms_right_users_corrects_unnamed_complaints_and_rejects_noise():
    assert verdict_for("up", None, predicted=3, truth=3) == ("confirmed", None)
    assert verdict_for("down", 5, predicted=3, truth=5) == ("confirmed", None)
    assert verdict_for("down", None, predicted=3, truth=5) == ("corrected", 5)
    assert verdict_for("down", 7, predicted=3, truth=3) == ("rejected", None)
    assert verdict_for("up", None, predicted=3, truth=5) == ("rejected", None)
