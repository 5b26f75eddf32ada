"""The model registry table: versions filtered, sorted and paged in SQL, with serving status."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Select, case, exists, func, or_, select
from sqlalchemy.orm import Session

from db.models import Channel, Dataset, Model, ModelVersion
from db.queries.dates import within_days
from db.repo.models import channels_by_version

VERSION_STATUSES = ("any", "production", "candidate", "serving", "archived")
VERSION_SORTS = {
    "newest": (ModelVersion.created_at.desc(), ModelVersion.id.desc()),
    "oldest": (ModelVersion.created_at.asc(), ModelVersion.id.asc()),
    "best accuracy": (ModelVersion.accuracy.desc(), ModelVersion.id.desc()),
    "worst accuracy": (ModelVersion.accuracy.asc(), ModelVersion.id.desc()),
}


@dataclass(frozen=True)
class VersionFilter:
    search: str = ""
    model_id: int | None = None
    channel_id: int | None = None
    status: str = "any"
    created_from: date | None = None
    created_to: date | None = None


@dataclass(frozen=True)
class VersionRow:
    id: int
    model_name: str
    version: int
    architecture: str
    accuracy: float | None
    f1_macro: float | None
    dataset_name: str
    device: str
    feedback_samples: int
    train_seconds: float
    created_by: str
    created_at: datetime
    status: str
    channels: str

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.version}"


def _serving_flags():
    in_production = exists().where(Channel.production_version_id == ModelVersion.id)
    in_candidate = exists().where(Channel.candidate_version_id == ModelVersion.id)
    return in_production, in_candidate


def _search_clause(text: str):
    text = text.strip()
    match = re.fullmatch(r"v?(\d+)", text, flags=re.IGNORECASE)
    if match:
        number = int(match.group(1))
        return or_(ModelVersion.version == number, ModelVersion.id == number)
    like = f"%{text}%"
    return or_(
        Model.name.ilike(like),
        ModelVersion.architecture.ilike(like),
        ModelVersion.created_by.ilike(like),
        ModelVersion.device.ilike(like),
    )


def _apply_filters(query: Select, filters: VersionFilter) -> Select:
    in_production, in_candidate = _serving_flags()
    if filters.search.strip():
        query = query.where(_search_clause(filters.search))
    if filters.model_id is not None:
        query = query.where(ModelVersion.model_id == filters.model_id)
    if filters.channel_id is not None:
        channel_model = select(Channel.model_id).where(Channel.id == filters.channel_id)
        query = query.where(ModelVersion.model_id == channel_model.scalar_subquery())
    status_clause = {
        "production": in_production,
        "candidate": in_candidate,
        "serving": or_(in_production, in_candidate),
        "archived": ~or_(in_production, in_candidate),
    }.get(filters.status)
    if status_clause is not None:
        query = query.where(status_clause)
    return within_days(query, ModelVersion.created_at, filters.created_from, filters.created_to)


def version_page(
    *,
    session: Session,
    filters: VersionFilter = VersionFilter(),
    sort: str = "newest",
    page: int = 0,
    page_size: int = 25,
) -> tuple[list[VersionRow], int]:
    """One page of the registry table (newest first by default) and the filtered total."""
    in_production, in_candidate = _serving_flags()
    status = case(
        (in_production, "production"), (in_candidate, "candidate"), else_="archived"
    ).label("status")
    base = select(ModelVersion.id).join(Model, Model.id == ModelVersion.model_id)
    total = session.scalar(
        select(func.count()).select_from(_apply_filters(base, filters).subquery())
    )
    query = _apply_filters(
        select(
            ModelVersion.id,
            Model.name,
            ModelVersion.version,
            ModelVersion.architecture,
            ModelVersion.accuracy,
            ModelVersion.f1_macro,
            Dataset.name,
            ModelVersion.device,
            ModelVersion.feedback_samples,
            ModelVersion.train_seconds,
            ModelVersion.created_by,
            ModelVersion.created_at,
            status,
        )
        .join(Model, Model.id == ModelVersion.model_id)
        .join(Dataset, Dataset.id == ModelVersion.dataset_id),
        filters,
    )
    query = query.order_by(*VERSION_SORTS.get(sort, VERSION_SORTS["newest"]))
    rows = session.execute(query.limit(page_size).offset(page * page_size)).all()
    serving = channels_by_version(session, [r[0] for r in rows])
    return [VersionRow(*r, ", ".join(serving.get(r[0], []))) for r in rows], total or 0


def version_choices(
    *, session: Session, model_id: int | None = None, limit: int = 200
) -> list[tuple[int, str]]:
    """(id, "model vN · offline acc") for select boxes, newest first, without loading JSON
    columns (the accuracy is the holdout's, not live: labelled so next to live figures)."""
    query = (
        select(ModelVersion.id, Model.name, ModelVersion.version, ModelVersion.accuracy)
        .join(Model, Model.id == ModelVersion.model_id)
        .order_by(ModelVersion.id.desc())
        .limit(limit)
    )
    if model_id is not None:
        query = query.where(ModelVersion.model_id == model_id)
    return [
        (vid, f"{name} v{number}" + (f" · offline acc {acc:.1%}" if acc is not None else ""))
        for vid, name, number, acc in session.execute(query)
    ]
