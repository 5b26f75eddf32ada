"""A dataset's fixed holdout: the validation and test samples chosen once, when it is registered.

Every version trained on the dataset is scored on the same test samples and never trains on
them, whatever its job's seed. A dataset that comes with its own test split (a Keras dataset, a
folder with `train/` and `test/`) keeps it; otherwise a seeded stratified split is drawn once.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np

from core.ml.datasets import DatasetError, LabelledImages, Split

VAL_FRACTION = 0.15
TEST_FRACTION = 0.15
# Where the test split is given, validation is carved from its train part: a tenth is the usual
# share (CIFAR-10's 45,000/5,000), enough for early stopping without starving training.
GIVEN_TEST_VAL_FRACTION = 0.10
ORIGINS = ("given", "seeded")


@dataclass(frozen=True)
class Holdout:
    """Sample positions (in the dataset's order) of its validation and test parts.

    `origin` is "given" when the test split came with the data, "seeded" when it was drawn with
    `seed`; `dataset_fingerprint` names the data the positions refer to.
    """

    val_idx: np.ndarray
    test_idx: np.ndarray
    origin: str
    seed: int
    num_samples: int
    dataset_fingerprint: str

    @property
    def fingerprint(self) -> str:
        """sha256 of the test positions and of the data they point into: equal means same test."""
        digest = hashlib.sha256(f"{self.dataset_fingerprint}|{self.num_samples}|".encode())
        digest.update(np.asarray(self.test_idx, dtype="<i8").tobytes())
        return digest.hexdigest()

    def summary(self) -> dict:
        """What a page shows about the holdout (JSON-ready)."""
        return {
            "origin": self.origin,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "num_val": int(len(self.val_idx)),
            "num_test": int(len(self.test_idx)),
        }

    def to_bytes(self) -> bytes:
        """A compressed .npz image of the holdout, for the registry row."""
        meta = {**self.summary(), "dataset_fingerprint": self.dataset_fingerprint}
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            val=np.asarray(self.val_idx, dtype=np.int64),
            test=np.asarray(self.test_idx, dtype=np.int64),
            meta=np.array(json.dumps(meta, sort_keys=True)),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Holdout:
        """Read what `to_bytes` wrote; DatasetError when the bytes are not a holdout."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
                val, test = archive["val"], archive["test"]
                meta = json.loads(str(archive["meta"]))
            return cls(
                val, test, meta["origin"], int(meta["seed"]), int(meta["num_samples"]),
                meta["dataset_fingerprint"],
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"the stored holdout is unreadable: {exc}") from exc


def make_holdout(
    data: LabelledImages,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> Holdout:
    """The dataset's holdout: its own test (and validation) split where it has one, else a
    stratified split drawn with `seed` (the same one `split_dataset` drew before holdouts)."""
    if data.given_test_idx is not None:
        test_idx = np.sort(np.asarray(data.given_test_idx, dtype=np.int64))
        if data.given_val_idx is not None:
            val_idx = np.sort(np.asarray(data.given_val_idx, dtype=np.int64))
        else:
            train = np.setdiff1d(np.arange(data.num_samples), test_idx)
            _, val_idx = _stratified_part(data.y, train, GIVEN_TEST_VAL_FRACTION, seed, "train")
        return Holdout(val_idx, test_idx, "given", seed, data.num_samples, data.fingerprint)
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError("val_fraction and test_fraction must be in (0, 1) and sum below 1")
    _require_three_per_class(data)
    everything = np.arange(data.num_samples)
    rest, test_idx = _stratified_part(data.y, everything, test_fraction, seed, "the dataset")
    val_share = val_fraction / (1.0 - test_fraction)
    _, val_idx = _stratified_part(data.y, rest, val_share, seed, "the dataset")
    return Holdout(val_idx, test_idx, "seeded", seed, data.num_samples, data.fingerprint)


def _require_three_per_class(data: LabelledImages) -> None:
    counts = np.bincount(data.y, minlength=data.num_classes)
    present = np.flatnonzero(counts)
    rarest = int(present[np.argmin(counts[present])])
    if counts[rarest] < 3:
        raise DatasetError(
            f"too few samples to stratify: class {data.class_names[rarest]!r} "
            f"has {int(counts[rarest])} (each class needs at least 3)"
        )


def _stratified_part(
    y: np.ndarray, indices: np.ndarray, fraction: float, seed: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """(the rest, a seeded stratified `fraction` of `indices`, sorted); the part has at least
    one sample of each class. The rest keeps sklearn's order so a second draw from it repeats
    the split `split_dataset` made before holdouts existed."""
    from sklearn.model_selection import train_test_split

    classes = len(np.unique(y[indices]))
    # A float share as before holdouts existed (the same seed draws the same samples), raised
    # to one sample per class where the share would give fewer.
    size: float | int = fraction if np.ceil(fraction * len(indices)) >= classes else classes
    if np.ceil(fraction * len(indices)) >= len(indices) or classes >= len(indices):
        raise DatasetError(f"too few samples in {where} for this split")
    try:
        rest, part = train_test_split(
            indices, test_size=size, random_state=seed, stratify=y[indices]
        )
    except ValueError as exc:
        raise DatasetError(f"too few samples to stratify this split: {exc}") from exc
    return rest, np.sort(part)


def split_by_holdout(data: LabelledImages, holdout: Holdout) -> Split:
    """Train/validation/test parts: test and validation are the holdout's, train is the rest."""
    if holdout.num_samples != data.num_samples:
        raise DatasetError(
            f"the dataset has {data.num_samples} samples but its holdout was fixed on "
            f"{holdout.num_samples}: it changed since it was registered"
        )
    val_idx, test_idx = np.asarray(holdout.val_idx), np.asarray(holdout.test_idx)
    if np.intersect1d(val_idx, test_idx).size:
        raise DatasetError("the holdout's validation and test parts overlap")
    train_idx = np.setdiff1d(np.arange(data.num_samples), np.union1d(val_idx, test_idx))
    return Split(
        data.take(train_idx), data.take(val_idx), data.take(test_idx), train_idx, val_idx, test_idx
    )
