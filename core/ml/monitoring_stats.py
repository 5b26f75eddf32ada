"""Pure statistics for live monitoring: Wilson intervals, PSI and Jensen–Shannon drift on fixed
histograms, a three-state drift verdict, M-of-N alerting and percentiles from latency histograms.

Every histogram here uses fixed bin edges so rollups of different buckets can simply be summed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE_BINS = np.linspace(0.0, 1.0, 11)
"""10 equal bins on [0, 1]; the last is closed so a confidence of exactly 1.0 lands in it."""

INTENSITY_EDGES = np.linspace(0.0, 256.0, 17)
"""16 bins of width 16 for a per-image mean pixel value on the 0–255 scale."""

LATENCY_EDGES_MS = np.concatenate(([0.0], np.geomspace(0.5, 30_000.0, 40)))
"""[0, 0.5 ms) then 39 log-spaced bins up to 30 s, each ~1.33× wider than the previous one."""

DEFAULT_MIN_COUNT = 200
"""Predictions a bucket needs before it gets a verdict. With 10–16 bins and no real shift, pure
sampling noise gives a mean PSI of ~0.05 at n=200 (≈ (bins-1)/n) and essentially never exceeds
0.2; at n=50 it exceeds 0.2 about half the time, so smaller buckets say "not enough data"."""

PSI_THRESHOLD = 0.2
"""The usual rule of thumb: PSI < 0.1 stable, 0.1–0.2 moderate shift, > 0.2 major shift."""

JS_THRESHOLD = 0.2
"""For small shifts JS distance² ≈ PSI / (8 ln 2), so 0.2 agrees with PSI 0.2 (≈ 0.22). A stricter
0.1 (≈ PSI 0.055) is crossed by sampling noise alone in ~30 % of 200-prediction buckets. JS stays
bounded where PSI is dominated by a bin empty on one side."""

ALERT_M, ALERT_N = 3, 5
"""An alert needs 3 breaching buckets of the last 5: one noisy bucket never alerts; with a 5 %
false-breach rate per bucket, 3 of 5 happens by chance ~0.1 % of the time."""

PSI_EPSILON = 1e-4
BREACHING_STATES = frozenset({"drift", "breach"})
BUCKET_STATES = frozenset({"ok", "not_enough_data"}) | BREACHING_STATES


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for a proportion successes/n; None when there is no observation."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n (got successes={successes}, n={n})")
    if z <= 0:
        raise ValueError(f"z must be positive (got {z})")
    if n == 0:
        return None
    p, z2 = successes / n, z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _distribution(values: Sequence[float], name: str) -> np.ndarray:
    """Counts or shares as a probability vector, with a readable error for bad input."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty list of bin counts")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts")
    total = arr.sum()
    if total <= 0:
        raise ValueError(f"{name} has no observations")
    return arr / total


def _pair(
    p: Sequence[float], q: Sequence[float], names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    a, b = _distribution(p, names[0]), _distribution(q, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} need the same bins ({a.size} vs {b.size})")
    return a, b


def psi(
    expected: Sequence[float], observed: Sequence[float], epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index Σ (q − p)·ln(q / p) over the same bins (counts or shares).

    A bin empty on one side would make PSI infinite, so shares are floored at `epsilon` and
    renormalised (to stay a distribution). The floor caps an empty bin's contribution at roughly
    share·ln(share/epsilon) — e.g. 0.1·ln(1000) ≈ 0.69, still far above any threshold.
    """
    p, q = _pair(expected, observed, ("expected", "observed"))
    p, q = np.maximum(p, epsilon), np.maximum(q, epsilon)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon distance: sqrt of the JS divergence in bits, so 0 (same) … 1 (disjoint)."""
    a, b = _pair(p, q, ("p", "q"))
    m = (a + b) / 2

    def kl_to_m(x: np.ndarray) -> float:
        mask = x > 0  # 0·log 0 = 0; m > 0 wherever x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    divergence = 0.5 * kl_to_m(a) + 0.5 * kl_to_m(b)
    return float(math.sqrt(min(1.0, max(0.0, divergence))))


def _fixed_histogram(
    values: Sequence[float] | np.ndarray, edges: np.ndarray, name: str
) -> list[int]:
    """Counts on fixed edges; values beyond the ends go to the end bins so none is lost."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite numbers")
    clipped = np.clip(arr, edges[0], edges[-1])
    index = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(index, minlength=len(edges) - 1).astype(int).tolist()


def confidence_histogram(
    confidences: Sequence[float] | np.ndarray, bins: np.ndarray = CONFIDENCE_BINS
) -> list[int]:
    """Counts of top-class confidences on fixed edges (1.0 counts in the last bin)."""
    return _fixed_histogram(confidences, np.asarray(bins, dtype=np.float64), "confidences")


def class_mix(classes: Sequence[int] | np.ndarray, num_classes: int) -> list[int]:
    """Counts of predicted classes 0 … num_classes − 1."""
    arr = np.asarray(classes, dtype=np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"classes must lie in 0..{num_classes - 1}")
    return np.bincount(arr, minlength=num_classes).astype(int).tolist()


def image_mean(image: np.ndarray) -> float:
    """An image's mean pixel value (0–255 scale): the cheap input statistic drift watches."""
    return float(np.mean(np.asarray(image, dtype=np.float64)))


def intensity_histogram(means: Sequence[float] | np.ndarray) -> list[int]:
    """Counts of image means (see `image_mean`) on INTENSITY_EDGES."""
    return _fixed_histogram(means, INTENSITY_EDGES, "image means")


def mean_intensity_histogram(images: Sequence[np.ndarray] | np.ndarray) -> list[int]:
    """Counts of each image's mean pixel value (0–255 scale) on INTENSITY_EDGES."""
    return intensity_histogram([image_mean(image) for image in images])


def latency_histogram(latencies_ms: Sequence[float] | np.ndarray) -> list[int]:
    """Counts of latencies (ms) on LATENCY_EDGES_MS; anything above 30 s counts in the last bin."""
    return _fixed_histogram(latencies_ms, LATENCY_EDGES_MS, "latencies")


def percentile_from_histogram(
    counts: Sequence[int], edges: Sequence[float], q: float
) -> float | None:
    """q-th percentile (0–100) of a histogram, interpolated linearly inside its bin.

    The nearest-rank percentile of the raw values lies in the bin the estimate comes from, so the
    error is at most that bin's width: on LATENCY_EDGES_MS ≤ 33 % of the value above 0.5 ms and
    ≤ 0.5 ms below it (values over 30 s were clipped, so the estimate never exceeds 30 s).
    None when the histogram is empty.
    """
    c = np.asarray(counts, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    if c.ndim != 1 or e.shape != (c.size + 1,):
        raise ValueError(f"need len(edges) == len(counts) + 1 (got {e.size} and {c.size})")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100 (got {q})")
    if np.any(c < 0):
        raise ValueError("counts must be non-negative")
    total = c.sum()
    if total == 0:
        return None
    target = q / 100 * total
    cumulative = np.cumsum(c)
    if target == 0:
        i = int(np.flatnonzero(c)[0])
        return float(e[i])
    i = int(np.searchsorted(cumulative, target, side="left"))
    before = cumulative[i] - c[i]
    return float(e[i] + (target - before) / c[i] * (e[i + 1] - e[i]))


@dataclass(frozen=True)
class DriftVerdict:
    """One bucket's verdict; psi and js are None when there was not enough data to judge."""

    state: str  # "ok" | "drift" | "not_enough_data"
    psi: float | None
    js: float | None
    n: int


def drift_verdict(
    reference_counts: Sequence[float],
    observed_counts: Sequence[float],
    *,
    min_count: int = DEFAULT_MIN_COUNT,
    psi_threshold: float = PSI_THRESHOLD,
    js_threshold: float = JS_THRESHOLD,
) -> DriftVerdict:
    """Compare a bucket's histogram with the reference (the version on its holdout).

    Fewer than `min_count` observations is "not_enough_data" — never "ok". Otherwise "drift" when
    PSI exceeds `psi_threshold` or JS distance exceeds `js_threshold`.
    """
    n = int(np.sum(np.asarray(observed_counts, dtype=np.float64)))
    if n < min_count:
        return DriftVerdict("not_enough_data", None, None, n)
    index = psi(reference_counts, observed_counts)
    distance = js_distance(reference_counts, observed_counts)
    drifted = index > psi_threshold or distance > js_threshold
    return DriftVerdict("drift" if drifted else "ok", index, distance, n)


def breaching(states: Sequence[str], m: int = ALERT_M, n: int = ALERT_N) -> bool:
    """True when at least `m` of the last `n` bucket states (oldest first) are breaching.

    Breaching states are "drift" and "breach". A "not_enough_data" bucket takes one of the N places
    but never counts toward M: it neither raises an alert nor proves that all is well.
    """
    if not 1 <= m <= n:
        raise ValueError(f"need 1 <= m <= n (got m={m}, n={n})")
    unknown = sorted(set(states) - BUCKET_STATES)
    if unknown:
        raise ValueError(f"unknown bucket state(s) {unknown}; expected {sorted(BUCKET_STATES)}")
    recent = list(states)[-n:]
    return sum(state in BREACHING_STATES for state in recent) >= m
