"""Registering datasets that `core.ml.datasets` has read: the registry row mirrors the data.

This is where a dataset's source name is checked against core.ml's one list of sources before
it reaches the registry (which does not know the list), and where its holdout is fixed: once, at
registration, independent of any job's seed (core.ml.holdout).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from core.ml.catalog import default_flip_safe
from core.ml.datasets import DatasetError, LabelledImages, check_source, load_dataset
from core.ml.holdout import Holdout, make_holdout
from core.ml.images import image_digests
from db.errors import RegistryError
from db.repo.datasets import (
    DatasetInfo,
    DatasetRecord,
    find_dataset,
    fix_holdout,
    get_holdout_bytes,
    has_holdout_images,
    register_dataset,
    store_holdout_images,
)


def register_loaded_dataset(
    *, session: Session, name: str, source: str, location: str | None, data: LabelledImages,
    flip_safe: bool | None = None,
) -> DatasetInfo:  # fmt: skip
    """Record `data` (already loaded from `source`/`location`) under `name`, with its holdout.

    `flip_safe` None takes the source's default (core.ml.catalog.default_flip_safe)."""
    try:
        check_source(source)
        holdout = make_holdout(data)
    except DatasetError as exc:
        raise RegistryError(f"dataset {name!r}: {exc}") from exc
    record = DatasetRecord(
        name, source, location, list(data.class_names), list(data.input_shape), data.num_samples,
        data.fingerprint, holdout.to_bytes(), holdout.fingerprint, holdout.summary(),
        flip_safe=default_flip_safe(source, location) if flip_safe is None else bool(flip_safe),
    )  # fmt: skip
    info = register_dataset(session=session, record=record)
    _store_holdout_images(session, info.id, data, holdout)
    return info


def _store_holdout_images(
    session: Session, dataset_id: int, data: LabelledImages, holdout: Holdout
) -> None:
    """The digests of the holdout's validation and test images, which feedback is checked
    against: an annotated input identical to one of them never waits for a retrain."""
    positions = np.union1d(holdout.val_idx, holdout.test_idx).astype(np.int64)
    store_holdout_images(
        session=session, dataset_id=dataset_id, digests=image_digests(data.x[positions])
    )


def register_builtin_dataset(*, session: Session) -> DatasetInfo:
    """The scikit-learn `digits` set, registered once (offline)."""
    existing = find_dataset(session=session, name="digits")
    if existing is not None:
        return existing
    data = load_dataset("digits")
    return register_loaded_dataset(
        session=session, name="digits", source="digits", location=None, data=data
    )


def dataset_holdout(*, session: Session, dataset: DatasetInfo, data: LabelledImages) -> Holdout:
    """The holdout stored with `dataset` (whose images are `data`).

    A dataset registered before holdouts existed gets one now, fixed for good the first time
    it is asked for (the same rule registration uses), so every later version shares it.
    """
    blob = get_holdout_bytes(session=session, dataset_id=dataset.id)
    if blob is None:
        fresh = make_holdout(data)
        fix_holdout(
            session=session, dataset_id=dataset.id, holdout=fresh.to_bytes(),
            holdout_fingerprint=fresh.fingerprint, holdout_summary=fresh.summary(),
        )  # fmt: skip
        blob = get_holdout_bytes(session=session, dataset_id=dataset.id)
    holdout = Holdout.from_bytes(blob)
    if holdout.dataset_fingerprint != data.fingerprint:
        raise DatasetError(
            f"dataset {dataset.name!r} changed since its holdout was fixed (fingerprint "
            f"{data.fingerprint[:12]}… instead of {holdout.dataset_fingerprint[:12]}…): its test "
            "positions no longer name the same images; register the new data under a new name"
        )
    if not has_holdout_images(session=session, dataset_id=dataset.id):  # registered before 0016
        _store_holdout_images(session, dataset.id, data, holdout)
    return holdout
