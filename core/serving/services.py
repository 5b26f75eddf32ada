"""What the serving endpoints share in a process: the model cache, the prediction log, settings,
the key rate limiter and last-use recorder, and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.serving.keys import KeyUseRecorder, RateLimiter
from core.serving.metrics import ServingMetrics
from core.serving.model_cache import ModelCache
from core.serving.prediction_log import PredictionLog
from core.serving.settings import ServingSettings
from core.serving.shared_limiter import limiter_for_this_process
from db.artifact_store import artifact_store
from db.engine import get_engine


@dataclass
class Services:
    """The model cache, the prediction log and the settings; started and closed by the lifespan."""

    database_url: str
    settings: ServingSettings
    cache: ModelCache
    predictions: PredictionLog
    key_use: KeyUseRecorder
    metrics: ServingMetrics
    # Shared by the worker processes of one `channelhub serve --workers N`.
    limiter: RateLimiter = field(default_factory=limiter_for_this_process)

    @classmethod
    def start(
        cls, database_url: str, settings: ServingSettings, metrics: ServingMetrics | None = None
    ) -> Services:
        get_engine(database_url)  # create or upgrade the schema before any thread uses it
        metrics = metrics or ServingMetrics()
        predictions = PredictionLog(
            database_url,
            artifact_store(),
            flush_seconds=settings.flush_seconds,
            rollup_seconds=settings.rollup_seconds,
            flush_rows=settings.flush_rows,
            max_pending=settings.max_pending,
            rollups=settings.rollups,
        )
        cache = ModelCache(
            database_url,
            refresh_seconds=settings.refresh_seconds,
            batching=settings.batch_policy(),
            seed=settings.seed,
            metrics=metrics,
        )
        cache.start()
        key_use = KeyUseRecorder(database_url)
        key_use.start()
        return cls(database_url, settings, cache, predictions, key_use, metrics)

    def close(self) -> None:
        """Answer queued requests, then write every logged prediction and the keys' last use."""
        self.cache.close()
        self.predictions.close()
        self.key_use.close()
        self.limiter.close()
