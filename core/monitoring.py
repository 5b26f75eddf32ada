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
