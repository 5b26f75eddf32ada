"""Browsing the prediction log: newest first, filtered, one page at a time (keyset paging on
the (channel, created_at) index, so a page costs the same at 10 rows or 10 million)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Feedback, Prediction
from db.queries.dates import within_days


@dataclass(frozen=True)
class PredictionFilter:
    channel_id: int
    arm: str | None = None
    predicted_class: int | None = None
    min_confidence: float = 0.0
    max_confidence: float = 1.0
    first_day: date | None = None
    last_day: date | None = None
    simulated: bool | None = None


@dataclass(frozen=True)
class PredictionRow:
    id: str
    created_at: datetime
    arm: str
    version_id: int
    predicted_class: int
    confidence: float
    latency_ms: float
    simulated: bool
    input_path: str | None
    rating: str | None
    claimed_class: int | None


def prediction_page(
    *, session: Session, filters: PredictionFilter, before: datetime | None = None, limit: int = 50
) -> list[PredictionRow]:
    """Up to `limit` predictions matching `filters`, newest first, older than `before`."""
    f = filters
    query = (
        select(Prediction, Feedback.rating, Feedback.claimed_class)
        .outerjoin(Feedback, Feedback.prediction_id == Prediction.id)
        .where(Prediction.channel_id == f.channel_id)
        .order_by(Prediction.created_at.desc())
        .limit(limit)
    )
    if f.arm:
        query = query.where(Prediction.arm == f.arm)
    if f.predicted_class is not None:
        query = query.where(Prediction.predicted_class == f.predicted_class)
    if f.min_confidence > 0.0:
        query = query.where(Prediction.confidence >= f.min_confidence)
    if f.max_confidence < 1.0:
        query = query.where(Prediction.confidence <= f.max_confidence)
    if f.simulated is not None:
        query = query.where(Prediction.simulated.is_(f.simulated))
    if before is not None:
        query = query.where(Prediction.created_at < before)
    query = within_days(query, Prediction.created_at, f.first_day, f.last_day)
    return [
        PredictionRow(
            p.id,
            p.created_at,
            p.arm,
            p.version_id,
            p.predicted_class,
            p.confidence,
            p.latency_ms,
            p.simulated,
            p.input_path,
            rating,
            claimed,
        )  # fmt: skip
        for p, rating, claimed in session.execute(query)
    ]
