"""Tests for core.ml.monitoring_stats against hand-computed values (arithmetic in the comments)."""

import math

import numpy as np
import pytest

from core.ml.monitoring_stats import (
    LATENCY_EDGES_MS,
    breaching,
    class_mix,
    confidence_histogram,
    drift_verdict,
    js_distance,
    latency_histogram,
    mean_intensity_histogram,
    percentile_from_histogram,
    psi,
    wilson_interval,
)


def test_wilson_by_hand() -> None:
    # 8/10, z=1.96: z²=3.8416, z²/n=0.38416, denominator=1.38416
    # centre = (0.8 + 0.19208) / 1.38416 = 0.716738
    # half = 1.96·sqrt(0.8·0.2/10 + 3.8416/400) / 1.38416 = 1.96·sqrt(0.025604) / 1.38416 = 0.226579
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.716738 - 0.226579, abs=1e-5)  # 0.4902
    assert high == pytest.approx(0.716738 + 0.226579, abs=1e-5)  # 0.9433
    # 0/10: centre = 0.19208/1.38416 = 0.138771 = half, so (0, 0.277542)
    low, high = wilson_interval(0, 10)
    assert (low, high) == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.277542, abs=1e-5))
    assert wilson_interval(0, 0) is None


@pytest.mark.parametrize(("successes", "n"), [(11, 10), (-1, 10), (0, -1)])
def test_wilson_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(successes, n)


def test_psi_by_hand() -> None:
    # (0.4−0.5)·ln(0.4/0.5) + (0.6−0.5)·ln(0.6/0.5) = 0.1·0.223144 + 0.1·0.182322 = 0.0405465
    assert psi([0.5, 0.5], [0.4, 0.6]) == pytest.approx(0.0405465, abs=1e-6)
    assert psi([50, 50], [40, 60]) == pytest.approx(0.0405465, abs=1e-6)  # counts normalise
    assert psi([3, 1, 6], [30, 10, 60]) == pytest.approx(0.0, abs=1e-12)


def test_psi_floors_an_empty_bin() -> None:
    # observed [1, 0] -> [1, 1e-4] / 1.0001 = [0.99990001, 0.00009999]
    # 0.4999·ln(0.9999/0.5) + 0.4999·ln(0.5/0.00009999) = 0.346454 + 4.257795 = 4.604249
    assert psi([1, 1], [1, 0]) == pytest.approx(4.604249, abs=1e-5)


@pytest.mark.parametrize(
    ("expected", "observed", "message"),
    [
        ([1, 2], [1, 2, 3], "same bins"),
        ([0, 0], [1, 1], "no observations"),
        ([1, -1], [1, 1], "non-neg"),
    ],
)
def test_psi_rejects_bad_histograms(expected, observed, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        psi(expected, observed)


def test_js_distance_by_hand() -> None:
    # p=[1,0], q=[.5,.5], m=[.75,.25]: KL(p‖m) = log2(4/3) = 0.415037
    # KL(q‖m) = .5·log2(.5/.75) + .5·log2(.5/.25) = −0.292481 + 0.5 = 0.207519
    # JSD = (0.415037 + 0.207519)/2 = 0.311278 bits; distance = sqrt = 0.557923
    assert js_distance([1, 0], [0.5, 0.5]) == pytest.approx(0.557923, abs=1e-6)
    assert js_distance([0.5, 0.5], [1, 0]) == pytest.approx(0.557923, abs=1e-6)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: 1 bit, distance 1
    assert js_distance([2, 3, 5], [20, 30, 50]) == pytest.approx(0.0, abs=1e-7)


def test_histograms_on_fixed_edges() -> None:
    assert confidence_histogram([0.0, 0.05, 0.1, 0.95, 1.0]) == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert class_mix([0, 2, 2], num_classes=3) == [1, 0, 2]
    with pytest.raises(ValueError, match="0..2"):
        class_mix([3], num_classes=3)
    # means 0 and 15 (bin 0–16 = 0), 16 (bin 1), 100 (bin 96–112 = 6), 255 (bin 240–256 = 15)
    images = [np.zeros((4, 4)), np.full((3, 3), 15), np.full((3, 3), 16)]
    images += [np.full((4, 4, 3), 100, np.uint8), np.full((2, 2), 255)]
    assert mean_intensity_histogram(images) == [2, 1, 0, 0, 0, 0, 1] + [0] * 8 + [1]
    counts = latency_histogram([0.1, 1.0, 60_000.0])  # over 30 s counts in the last bin
    assert (counts[0], counts[-1], sum(counts)) == (1, 1, 3)
    with pytest.raises(ValueError, match="finite"):
        latency_histogram([float("nan")])


def test_percentile_from_histogram_by_hand() -> None:
    # counts [0,10,10] on [0,1,2,3]: p50 rank 10 ends bin 1 -> 2.0; p75 rank 15 -> 2 + 5/10 = 2.5
    assert percentile_from_histogram([0, 10, 10], [0, 1, 2, 3], 50) == pytest.approx(2.0)
    assert percentile_from_histogram([0, 10, 10], [0, 1, 2, 3], 75) == pytest.approx(2.5)
    assert percentile_from_histogram([0, 10, 10], [0, 1, 2, 3], 0) == pytest.approx(1.0)
    assert percentile_from_histogram([0, 0], [0, 1, 2], 50) is None
    with pytest.raises(ValueError, match="len\\(edges\\)"):
        percentile_from_histogram([1, 2], [0, 1], 50)


def test_latency_percentiles_within_one_bin_of_the_raw_values() -> None:
    rng = np.random.default_rng(7)
    raw = rng.lognormal(mean=math.log(4.0), sigma=1.0, size=5_000)  # ms, median ~4 ms
    half = len(raw) // 2  # rollups sum histograms of separate buckets
    summed = np.add(latency_histogram(raw[:half]), latency_histogram(raw[half:]))
    for q in (50, 95, 99):
        true = float(np.percentile(raw, q, method="inverted_cdf"))  # nearest rank
        i = int(np.searchsorted(LATENCY_EDGES_MS, true, side="right")) - 1
        width = LATENCY_EDGES_MS[i + 1] - LATENCY_EDGES_MS[i]
        estimate = percentile_from_histogram(summed, LATENCY_EDGES_MS, q)
        assert abs(estimate - true) <= width
        assert abs(estimate - true) <= 0.33 * true  # the documented relative bound


def test_drift_verdict_three_states() -> None:
    reference = [100] * 10
    small = drift_verdict(reference, [190] + [0] * 9, min_count=200)  # wildly off, but n=190
    assert (small.state, small.psi, small.js, small.n) == ("not_enough_data", None, None, 190)
    same = drift_verdict(reference, [20] * 10, min_count=200)
    assert same.state == "ok" and same.psi == pytest.approx(0.0, abs=1e-12)
    shifted = drift_verdict(reference, [200] + [0] * 9, min_count=200)
    assert shifted.state == "drift" and shifted.n == 200


def test_either_measure_alone_can_flag_drift() -> None:
    # PSI 0.0405 (above); m=[.45,.55]: KL(p‖m) = .5·log2(.5/.45) + .5·log2(.5/.55) = 0.0072498,
    # KL(q‖m) = .4·log2(.4/.45) + .6·log2(.6/.55) = 0.0073485; JS = sqrt(0.0072992) = 0.085435
    reference, observed = [50, 50], [40, 60]
    assert js_distance(reference, observed) == pytest.approx(0.085435, abs=1e-6)
    psi_only = drift_verdict(reference, observed, min_count=1, psi_threshold=0.04, js_threshold=1)
    js_only = drift_verdict(reference, observed, min_count=1, psi_threshold=9, js_threshold=0.085)
    neither = drift_verdict(
        reference, observed, min_count=1, psi_threshold=0.05, js_threshold=0.086
    )
    assert (psi_only.state, js_only.state, neither.state) == ("drift", "drift", "ok")


def test_m_of_n_with_not_enough_data() -> None:
    nd = "not_enough_data"
    assert breaching(["drift", "drift", nd, nd, "drift"], m=3, n=5)
    assert not breaching(["drift", "drift", nd, nd, "ok"], m=3, n=5)
    # not-enough-data buckets take places among the last N: the three old drifts fall out
    assert not breaching(["drift", "drift", "drift", nd, nd, nd], m=3, n=5)
    assert not breaching([nd] * 10, m=1, n=5)  # never a breach, never a pass
    assert breaching(["ok", "breach"], m=1, n=2)
    with pytest.raises(ValueError, match="unknown bucket state"):
        breaching(["pass"], m=1, n=1)
    with pytest.raises(ValueError, match="1 <= m <= n"):
        breaching(["ok"], m=3, n=2)
