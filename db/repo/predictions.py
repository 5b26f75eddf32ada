"""The prediction log: one row per answered request, written in batches by the serving API."""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Prediction, utcnow

# Seeded from the OS once per process: a system call per id cost more than the rest of it.
_ids = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(16)))


def new_prediction_id() -> str:
    """Time-ordered 32-hex-digit id (ns clock + 64 random bits), unique across API processes."""
    return f"{time.time_ns():016x}{_ids.getrandbits(64):016x}"


@dataclass(frozen=True)
class PredictionRecord:
    id: str
    channel_id: int
    version_id: int
    arm: str
    predicted_class: int
    confidence: float
    probabilities: list[float]
    latency_ms: float
    input_path: str | None
    created_at: datetime = field(default_factory=utcnow)
    simulated: bool = False
    # core.ml.images.image_digest of the input (feedback on a holdout image never waits to train).
    input_digest: str | None = None


def insert_predictions(*, session: Session, records: list[PredictionRecord]) -> int:
    """Bulk insert (one executemany) and return the number of rows."""
    if not records:
        return 0
    session.execute(insert(Prediction), [asdict(r) for r in records])
    return len(records)


def get_prediction(*, session: Session, prediction_id: str) -> PredictionRecord | None:
    row = session.scalar(select(Prediction).where(Prediction.id == prediction_id))
    if row is None:
        return None
    return PredictionRecord(
        row.id, row.channel_id, row.version_id, row.arm, row.predicted_class, row.confidence,
        list(row.probabilities), row.latency_ms, row.input_path, row.created_at, row.simulated,
        row.input_digest,
    )  # fmt: skip
