"""Datasets registered in the registry (the data itself stays where it is).

The allowed sources are core.ml's to know (core.ml.catalog.DATASET_SOURCES); core.datasets checks
the source before it calls `register_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import ConflictError, NotFoundError
from db.models import Dataset


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    source: str
    location: str | None
    class_names: list[str]
    input_shape: list[int]
    num_samples: int
    fingerprint: str
    created_at: datetime


def _info(row: Dataset) -> DatasetInfo:
    return DatasetInfo(
        row.id,
        row.name,
        row.source,
        row.location,
        list(row.class_names),
        list(row.input_shape),
        row.num_samples,
        row.fingerprint,
        row.created_at,
    )


def register_dataset(
    *,
    session: Session,
    name: str,
    source: str,
    location: str | None,
    class_names: list[str],
    input_shape: list[int],
    num_samples: int,
    fingerprint: str,
) -> DatasetInfo:
    """Record a dataset that `core.ml.datasets.load_dataset` has read successfully."""
    if session.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
        raise ConflictError(f"a dataset named {name!r} already exists")
    row = Dataset(
        name=name,
        source=source,
        location=location,
        class_names=list(class_names),
        input_shape=list(input_shape),
        num_samples=num_samples,
        fingerprint=fingerprint,
    )
    session.add(row)
    session.flush()
    return _info(row)


def get_dataset(*, session: Session, dataset_id: int) -> DatasetInfo:
    row = session.get(Dataset, dataset_id)
    if row is None:
        raise NotFoundError(f"dataset {dataset_id} does not exist")
    return _info(row)


def find_dataset(*, session: Session, name: str) -> DatasetInfo | None:
    row = session.scalar(select(Dataset).where(Dataset.name == name))
    return _info(row) if row else None


def get_dataset_by_name(*, session: Session, name: str) -> DatasetInfo:
    info = find_dataset(session=session, name=name)
    if info is None:
        raise NotFoundError(f"dataset {name!r} does not exist")
    return info


def list_datasets(*, session: Session) -> list[DatasetInfo]:
    return [_info(r) for r in session.scalars(select(Dataset).order_by(Dataset.name))]
