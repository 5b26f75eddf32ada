"""Dataset actions: register a labelled image source, or the built-in digits set."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit
from db.errors import RegistryError
from db.repo.datasets import DatasetInfo, find_dataset, get_dataset, set_flip_safe

BUILTIN_NAME = "digits"


def _audit_registration(session: Session, actor: Actor, name: str, info: DatasetInfo) -> None:
    audit(
        session, actor, name, "dataset", info.id,
        after={"name": info.name, "source": info.source, "location": info.location,
               "num_samples": info.num_samples, "fingerprint": info.fingerprint,
               "flip_safe": info.flip_safe},
    )  # fmt: skip


@action("dataset.register", role="manager")
def register_dataset(
    *, session: Session, actor: Actor, name: str, source: str, location: str | None = None,
    flip_safe: bool | None = None,
) -> DatasetInfo:  # fmt: skip
    """Read a dataset (image folder, .npz file, Keras dataset) and record it under `name`.

    `flip_safe` (a mirrored image keeps its class) None takes the source's default."""
    from core.datasets import register_loaded_dataset
    from core.ml.datasets import DatasetError, load_dataset

    name = (name or "").strip()
    if not name:
        raise RegistryError("a dataset needs a name")
    if find_dataset(session=session, name=name) is not None:
        raise RegistryError(f"a dataset named {name!r} already exists")
    try:
        data = load_dataset(source, location)
    except DatasetError as exc:
        raise RegistryError(str(exc)) from exc
    info = register_loaded_dataset(
        session=session, name=name, source=source, location=location, data=data,
        flip_safe=flip_safe,
    )  # fmt: skip
    _audit_registration(session, actor, "dataset.register", info)
    return info


@action("dataset.register_builtin", role="manager")
def register_builtin_dataset(*, session: Session, actor: Actor) -> DatasetInfo:
    """Register the scikit-learn `digits` set once (offline); later calls return it unchanged."""
    from core.datasets import register_builtin_dataset as register_digits

    existing = find_dataset(session=session, name=BUILTIN_NAME)
    if existing is not None:
        return existing
    info = register_digits(session=session)
    _audit_registration(session, actor, "dataset.register_builtin", info)
    return info


@action("dataset.set_flip_safe", role="manager")
def set_dataset_flip_safe(
    *, session: Session, actor: Actor, dataset_id: int, flip_safe: bool
) -> DatasetInfo:
    """Say whether a mirrored image of the dataset keeps its class (the next retrain's default
    augmentation flips only where it does)."""
    if not isinstance(flip_safe, bool):
        raise RegistryError(f"flip_safe must be true or false (got {flip_safe!r})")
    before = get_dataset(session=session, dataset_id=dataset_id)
    info = set_flip_safe(session=session, dataset_id=dataset_id, flip_safe=flip_safe)
    audit(
        session, actor, "dataset.set_flip_safe", "dataset", info.id,
        before={"flip_safe": before.flip_safe}, after={"flip_safe": info.flip_safe},
    )  # fmt: skip
    return info
