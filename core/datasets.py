"""Registering datasets that `core.ml.datasets` has read: the registry row mirrors the data.

This is where a dataset's source name is checked against core.ml's one list of sources before
it reaches the registry (which does not know the list).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.ml.datasets import DatasetError, LabelledImages, check_source, load_dataset
from db.errors import RegistryError
from db.repo.datasets import DatasetInfo, find_dataset, register_dataset


def register_loaded_dataset(
    *, session: Session, name: str, source: str, location: str | None, data: LabelledImages
) -> DatasetInfo:
    """Record `data` (already loaded from `source`/`location`) under `name`."""
    try:
        check_source(source)
    except DatasetError as exc:
        raise RegistryError(str(exc)) from exc
    return register_dataset(
        session=session, name=name, source=source, location=location,
        class_names=list(data.class_names), input_shape=list(data.input_shape),
        num_samples=data.num_samples, fingerprint=data.fingerprint,
    )  # fmt: skip


def register_builtin_dataset(*, session: Session) -> DatasetInfo:
    """The scikit-learn `digits` set, registered once (offline)."""
    existing = find_dataset(session=session, name="digits")
    if existing is not None:
        return existing
    data = load_dataset("digits")
    return register_loaded_dataset(
        session=session, name="digits", source="digits", location=None, data=data
    )
