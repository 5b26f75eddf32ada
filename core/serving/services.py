"""What the serving endpoints share in a process: the model cache, the prediction log, settings."""

from __future__ import annotations

from dataclasses import dataclass

from core.serving.model_cache import ModelCache
from core.serving.prediction_log import PredictionLog
from core.serving.settings import ServingSettings
from db.engine import get_engine
from db.settings import artifact_dir


@dataclass
class Services:
    """The model cache, the prediction log and the settings; started and closed by the lifespan."""

    database_url: str
    settings: ServingSettings
    cache: ModelCache
    predictions: PredictionLog

    @classmethod
    def start(cls, database_url: str, settings: ServingSettings) -> Services:
        get_engine(database_url)  # create or upgrade the schema before any thread uses it
        predictions = PredictionLog(
            database_url,
            artifact_dir(),
            flush_seconds=settings.flush_seconds,
            flush_rows=settings.flush_rows,
        )
        cache = ModelCache(
            database_url,
            refresh_seconds=settings.refresh_seconds,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000,
            seed=settings.seed,
        )
        cache.start()
        return cls(database_url, settings, cache, predictions)

    def close(self) -> None:
        """Answer queued requests, then write every logged prediction."""
        self.cache.close()
        self.predictions.close()
