"""What a window of rollups says: request and error counts, latency percentiles, thumbs-up
share and feedback accuracy with its Wilson interval. Shared by the pages and the controller."""

from __future__ import annotations

from dataclasses import dataclass

from core.ml import monitoring_stats as stats
from db.queries.monitoring import Signals

# Below this many annotated items an accuracy is shown with its interval but called "too few".
MIN_ANNOTATED_FOR_ACCURACY = 20


@dataclass(frozen=True)
class ArmSummary:
    requests: int
    simulated: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    thumbs: int
    thumbs_up_share: float | None
    annotated: int
    accuracy: float | None
    accuracy_interval: tuple[float, float] | None


def summarize(s: Signals) -> ArmSummary:
    """The figures a page shows for one arm over one window or bucket."""
    latency = s.latency_hist
    edges = stats.LATENCY_EDGES_MS

    def pct(q: float) -> float | None:
        return stats.percentile_from_histogram(latency, edges, q) if sum(latency) else None

    thumbs = s.thumbs_up + s.thumbs_down
    annotated = s.annotated_right + s.annotated_wrong
    total = s.requests + s.errors
    return ArmSummary(
        requests=s.requests,
        simulated=s.simulated,
        errors=s.errors,
        error_rate=s.errors / total if total else None,
        p50_ms=pct(50),
        p95_ms=pct(95),
        thumbs=thumbs,
        thumbs_up_share=s.thumbs_up / thumbs if thumbs else None,
        annotated=annotated,
        accuracy=s.annotated_right / annotated if annotated else None,
        accuracy_interval=stats.wilson_interval(s.annotated_right, annotated),
    )


# Fewer requests than this in a bucket make its latency and error verdicts "not enough data".
MIN_REQUESTS_PER_BUCKET = 20


@dataclass(frozen=True)
class Reference:
    """How a version behaved on its dataset's holdout: what live traffic is compared with."""

    class_counts: list[int]
    confidence_hist: list[int]
    intensity_hist: list[int] | None


def holdout_reference(predictions_path: str, images=None) -> Reference:
    """A version's reference from its stored holdout predictions (and, when given, the holdout
    images for the input statistic)."""
    from pathlib import Path

    from core.ml.holdout_predictions import read_holdout_predictions

    held = read_holdout_predictions(Path(predictions_path))
    num_classes = held.probs.shape[1] if held.probs.ndim == 2 else int(held.y_pred.max()) + 1
    confidences = held.probs.max(axis=1).astype(float) if len(held.probs) else []
    return Reference(
        class_counts=stats.class_mix(held.y_pred, num_classes),
        confidence_hist=stats.confidence_histogram(confidences),
        intensity_hist=None if images is None else stats.mean_intensity_histogram(images),
    )


@dataclass(frozen=True)
class SignalState:
    """One signal of one bucket: ok, breach/drift, or not enough data, with the value seen."""

    state: str
    value: float | None
    detail: str = ""


def latency_state(s: Signals, max_p95_ms: float) -> SignalState:
    if s.requests < MIN_REQUESTS_PER_BUCKET:
        return SignalState("not_enough_data", None, f"{s.requests} requests")
    p95 = summarize(s).p95_ms
    return SignalState("breach" if p95 > max_p95_ms else "ok", p95, f"p95 {p95:.0f} ms")


def error_state(s: Signals, max_rate: float) -> SignalState:
    total = s.requests + s.errors
    if total < MIN_REQUESTS_PER_BUCKET:
        return SignalState("not_enough_data", None, f"{total} requests")
    rate = s.errors / total
    return SignalState("breach" if rate > max_rate else "ok", rate, f"{rate:.1%} errors")


def accuracy_state(s: Signals, min_accuracy: float, min_feedback: int) -> SignalState:
    """A breach only when even the interval's upper end is below the objective: a handful of
    annotated mistakes must not page anyone."""
    n = s.annotated_right + s.annotated_wrong
    if n < max(min_feedback, 1):
        return SignalState("not_enough_data", None, f"{n} annotated")
    _, high = stats.wilson_interval(s.annotated_right, n)
    accuracy = s.annotated_right / n
    state = "breach" if high < min_accuracy else "ok"
    return SignalState(state, accuracy, f"accuracy {accuracy:.1%} (n={n}, upper {high:.1%})")


def drift_state(
    s: Signals, reference: Reference, *, min_count: int, psi_threshold: float
) -> SignalState:
    """Class mix, confidence and input intensity against the reference; the worst one counts."""
    pairs = [("class mix", reference.class_counts, s.class_counts),
             ("confidence", reference.confidence_hist, s.confidence_hist)]  # fmt: skip
    if reference.intensity_hist is not None and sum(s.intensity_hist):
        pairs.append(("input intensity", reference.intensity_hist, s.intensity_hist))
    verdicts = []
    for name, ref, seen in pairs:
        size = max(len(ref), len(seen))
        ref = list(ref) + [0] * (size - len(ref))
        seen = list(seen) + [0] * (size - len(seen))
        v = stats.drift_verdict(ref, seen, min_count=min_count, psi_threshold=psi_threshold)
        verdicts.append((name, v))
    if any(v.state == "not_enough_data" for _, v in verdicts):
        return SignalState("not_enough_data", None, f"{s.requests} requests")
    name, worst = max(verdicts, key=lambda item: item[1].psi or 0.0)
    state = "drift" if any(v.state == "drift" for _, v in verdicts) else "ok"
    return SignalState(state, worst.psi, f"PSI {worst.psi:.2f} on {name}")


def live_slo_misses(
    s: Signals,
    *,
    min_accuracy: float | None,
    min_feedback: int,
    max_p95_ms: float | None,
    max_error_rate: float | None,
) -> tuple[list[str], list[str]]:
    """(objectives missed, objectives without enough data) on one window of live signals.

    Accuracy is judged only with `min_feedback` annotated items, latency and errors only with
    MIN_REQUESTS_PER_BUCKET requests: too little data is said, never counted as met."""
    a = summarize(s)
    missed, unknown = [], []
    if min_accuracy is not None:
        if a.annotated < max(min_feedback, 1):
            unknown.append(f"accuracy: {a.annotated} of {min_feedback} annotated items needed")
        elif a.accuracy < min_accuracy:
            missed.append(f"accuracy {a.accuracy:.1%} < {min_accuracy:.1%} (n={a.annotated})")
    enough_traffic = a.requests + a.errors >= MIN_REQUESTS_PER_BUCKET
    if max_p95_ms is not None:
        if not enough_traffic:
            unknown.append(f"p95: {a.requests} requests")
        elif a.p95_ms > max_p95_ms:
            missed.append(f"p95 {a.p95_ms:.0f} ms > {max_p95_ms:.0f} ms")
    if max_error_rate is not None:
        if not enough_traffic:
            unknown.append(f"errors: {a.requests} requests")
        elif a.error_rate > max_error_rate:
            missed.append(f"errors {a.error_rate:.1%} > {max_error_rate:.1%}")
    return missed, unknown
