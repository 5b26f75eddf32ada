"""Datasets registered in the registry (the data itself stays where it is).

The allowed sources are core.ml's to know (core.ml.catalog.DATASET_SOURCES); core.datasets checks
the source before it calls `register_dataset`. A dataset's holdout (its fixed validation/test
split) is stored with it as opaque bytes that core.ml.holdout writes and reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.errors import ConflictError
from db.models import Dataset, HoldoutImage
from db.repo.lookup import get_row, must_exist
from db.repo.rows import info_of


@dataclass(frozen=True)
class DatasetFields:
    """What a dataset is, shared by DatasetInfo and DatasetRecord (build either by keyword, or
    these fields first)."""

    name: str
    source: str
    location: str | None
    class_names: list[str]
    input_shape: list[int]
    num_samples: int
    fingerprint: str


@dataclass(frozen=True)
class DatasetInfo(DatasetFields):
    id: int
    created_at: datetime
    # None while the dataset has no holdout yet (registered before holdouts existed).
    holdout_fingerprint: str | None = None
    holdout_summary: dict[str, Any] | None = None
    # Whether a mirrored image keeps its class (core.ml.catalog.default_flip_safe by source).
    flip_safe: bool = False


def _info(row: Dataset) -> DatasetInfo:
    return info_of(
        DatasetInfo, row, class_names=list(row.class_names), input_shape=list(row.input_shape),
        holdout_summary=dict(row.holdout_summary) if row.holdout_summary else None,
        flip_safe=bool(row.flip_safe),
    )  # fmt: skip


@dataclass(frozen=True)
class DatasetRecord(DatasetFields):
    """What registering a dataset stores: the fields of DatasetInfo the registry does not assign,
    and the holdout's bytes (None for a dataset registered before holdouts existed)."""

    holdout: bytes | None = None
    holdout_fingerprint: str | None = None
    holdout_summary: dict[str, Any] | None = None
    flip_safe: bool = False


def register_dataset(*, session: Session, record: DatasetRecord) -> DatasetInfo:
    """Record a dataset that `core.ml.datasets.load_dataset` has read successfully, with the
    holdout fixed for it (core.datasets.register_loaded_dataset passes all three)."""
    if session.scalar(select(Dataset.id).where(Dataset.name == record.name)) is not None:
        raise ConflictError(f"a dataset named {record.name!r} already exists")
    columns = asdict(record)  # copies the class names and the holdout summary
    columns["input_shape"] = list(record.input_shape)  # a tuple is stored as a list too
    columns["class_names"] = list(record.class_names)
    row = Dataset(**columns)
    session.add(row)
    session.flush()
    return _info(row)


def get_dataset(*, session: Session, dataset_id: int) -> DatasetInfo:
    return _info(get_row(session, Dataset, dataset_id, "dataset"))


def find_dataset(*, session: Session, name: str) -> DatasetInfo | None:
    row = session.scalar(select(Dataset).where(Dataset.name == name))
    return _info(row) if row else None


def get_dataset_by_name(*, session: Session, name: str) -> DatasetInfo:
    return must_exist(find_dataset(session=session, name=name), f"dataset {name!r}")


def set_flip_safe(*, session: Session, dataset_id: int, flip_safe: bool) -> DatasetInfo:
    """Record whether a mirrored image of the dataset keeps its class."""
    row = get_row(session, Dataset, dataset_id, "dataset")
    row.flip_safe = bool(flip_safe)
    session.flush()
    return _info(row)


def list_datasets(*, session: Session) -> list[DatasetInfo]:
    return [_info(r) for r in session.scalars(select(Dataset).order_by(Dataset.name))]


def get_holdout_bytes(*, session: Session, dataset_id: int) -> bytes | None:
    """The stored holdout of a dataset, or None when it has none yet."""
    get_dataset(session=session, dataset_id=dataset_id)
    return session.scalar(select(Dataset.holdout).where(Dataset.id == dataset_id))


def fix_holdout(
    *,
    session: Session,
    dataset_id: int,
    holdout: bytes,
    holdout_fingerprint: str,
    holdout_summary: dict[str, Any],
) -> bool:
    """Store a holdout for a dataset that has none; False when one was already fixed (a
    holdout never changes once set)."""
    changed = session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.holdout_fingerprint.is_(None))
        .values(
            holdout=holdout,
            holdout_fingerprint=holdout_fingerprint,
            holdout_summary=holdout_summary,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    return changed == 1


def has_holdout_images(*, session: Session, dataset_id: int) -> bool:
    return bool(session.scalar(select(exists().where(HoldoutImage.dataset_id == dataset_id))))


def holdout_digests(*, session: Session, dataset_id: int) -> set[str]:
    """The digests of a dataset's holdout images (empty until they are stored)."""
    query = select(HoldoutImage.digest).where(HoldoutImage.dataset_id == dataset_id)
    return set(session.scalars(query))


def store_holdout_images(*, session: Session, dataset_id: int, digests: set[str]) -> int:
    """Record the digests of a dataset's holdout images, once (its holdout never changes);
    returns how many were stored (0 when they already were, by this or another process)."""
    if not digests or has_holdout_images(session=session, dataset_id=dataset_id):
        return 0
    rows = [{"dataset_id": dataset_id, "digest": d} for d in sorted(digests)]
    try:
        with session.begin_nested():  # two workers may store them at once: one wins
            session.execute(insert(HoldoutImage), rows)
    except IntegrityError:
        return 0
    return len(rows)
