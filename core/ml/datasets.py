"""Labelled image sets: digits, image folders, .npz files and Keras datasets.

A set that comes with its own test split (a Keras dataset; a folder with `train/` and `test/`,
optionally `val/`) says where it lies (`given_test_idx`); core.ml.holdout keeps it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from core.ml.catalog import DATASET_SOURCES, require_same_names
from core.ml.images import ImageError, decode_image, fit_to_shape

SOURCES: tuple[str, ...] = DATASET_SOURCES
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})
SPLIT_FOLDERS: tuple[str, ...] = ("train", "val", "test")  # the order samples are numbered in
KERAS_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "cifar10": tuple("airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck".split(",")),
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": tuple(
        "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
    ),
}


class DatasetError(ValueError):
    """A dataset could not be loaded or split; the message names the problem."""


@dataclass(frozen=True)
class LabelledImages:
    """Images as uint8 (N, H, W, C), integer labels (N,) and the name of each class.

    `given_test_idx` / `given_val_idx`: positions of the test / validation split the data came
    with (None when it came pooled).
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    given_val_idx: np.ndarray | None = field(default=None, compare=False)
    given_test_idx: np.ndarray | None = field(default=None, compare=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def fingerprint(self) -> str:
        """sha256 of the arrays' shapes, dtypes and bytes and of the class names."""
        digest = hashlib.sha256()
        for arr in (self.x, self.y):
            digest.update(f"{arr.shape}|{arr.dtype.str}|".encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
        digest.update("\x1f".join(self.class_names).encode())
        return digest.hexdigest()

    def take(self, indices: np.ndarray) -> LabelledImages:
        """The subset at `indices`, with the same class names (and no given split)."""
        return LabelledImages(self.x[indices], self.y[indices], self.class_names)


@dataclass(frozen=True)
class Split:
    """Train/validation/test parts of one dataset and the indices each took from it."""

    train: LabelledImages
    val: LabelledImages
    test: LabelledImages
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray


def load_dataset(source: str, location: str | None = None) -> LabelledImages:
    """Load a labelled image set from one of SOURCES; `location` is a path or a Keras name."""
    check_source(source)
    return LOADERS[source](location)


def check_source(source: str) -> None:
    """Refuse a source name that is not one of SOURCES, naming the allowed ones."""
    if source not in SOURCES:
        raise DatasetError(f"unknown dataset source {source!r} (allowed: {', '.join(SOURCES)})")


def _load_digits() -> LabelledImages:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[..., None]
    return _checked(x, bunch.target.astype(np.int64), tuple(str(i) for i in range(10)))


def _require_location(location: str | None, what: str) -> Path:
    if not location:
        raise DatasetError(f"a {what} path is required for this source")
    return Path(location).expanduser()


def _load_folder(location: str | None) -> LabelledImages:
    """One sub-folder per class; or `train/`, `test/` (and optionally `val/`) each holding one
    sub-folder per class, whose split is kept (samples in the order train, val, test)."""
    root = _require_location(location, "folder")
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _load_split_folder(root)
    class_names = _class_names(root)
    files = _class_files(root, class_names)
    if not files:
        raise DatasetError(f"dataset folder is empty: no class sub-folders with images in {root}")
    return _checked(_stack_images([p for _, p in files]), _labels(files), class_names)


def _load_split_folder(root: Path) -> LabelledImages:
    parts = [p for p in SPLIT_FOLDERS if (root / p).is_dir()]
    others = [
        p.name for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in SPLIT_FOLDERS
    ]  # fmt: skip
    if others:
        raise DatasetError(
            f"a folder with train/ and test/ may hold only val/ beside them (found "
            f"{', '.join(sorted(others))}/ in {root})"
        )
    class_names = _class_names(root / "train")
    files: dict[str, list[tuple[int, Path]]] = {}
    for part in parts:
        extra = set(_class_names(root / part)) - set(class_names)
        if extra:
            raise DatasetError(f"{part}/ has classes that train/ lacks: {', '.join(sorted(extra))}")
        files[part] = _class_files(root / part, class_names)
        if not files[part]:
            raise DatasetError(f"{root / part} holds no images in class sub-folders")
    ordered = [item for part in parts for item in files[part]]
    starts = np.cumsum([0] + [len(files[p]) for p in parts])
    span = {p: np.arange(starts[i], starts[i + 1]) for i, p in enumerate(parts)}
    data = _checked(_stack_images([p for _, p in ordered]), _labels(ordered), class_names)
    return replace(data, given_val_idx=span.get("val"), given_test_idx=span["test"])


def _class_names(folder: Path) -> tuple[str, ...]:
    return tuple(
        sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    )


def _class_files(folder: Path, class_names: tuple[str, ...]) -> list[tuple[int, Path]]:
    """(label, image path) of every image in `folder/<class>/`, in a stable order."""
    return [
        (label, path)
        for label, name in enumerate(class_names)
        if (folder / name).is_dir()
        for path in sorted((folder / name).iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    ]


def _labels(files: list[tuple[int, Path]]) -> np.ndarray:
    return np.array([label for label, _ in files], dtype=np.int64)


def _stack_images(paths: list[Path]) -> np.ndarray:
    """Read every image and fit all to the most common size (colour if any is colour)."""
    images = [_read_image_file(path) for path in paths]
    sizes = Counter(img.shape[:2] for img in images)
    height, width = sizes.most_common(1)[0][0]
    channels = 3 if any(img.shape[2] == 3 for img in images) else 1
    return np.stack([fit_to_shape(img, (height, width, channels)) for img in images])


def _read_image_file(path: Path) -> np.ndarray:
    try:
        return decode_image(path.read_bytes())
    except (ImageError, OSError) as exc:
        raise DatasetError(f"unreadable image file {path}: {exc}") from exc


def _load_npz(location: str | None) -> LabelledImages:
    path = _require_location(location, ".npz file")
    if not path.is_file():
        raise DatasetError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("x", "y") if key not in archive.files]
            if missing:
                raise DatasetError(f"npz file {path} lacks key(s) {', '.join(missing)}")
            x, y = archive["x"], archive["y"]
            names = archive["class_names"] if "class_names" in archive.files else None
    except DatasetError:
        raise
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read npz file {path}: {exc}") from exc
    x = _npz_images(x)
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"y must be a 1-D array of integer labels (got {y.dtype} {y.shape})")
    if len(x) != len(y):
        raise DatasetError(f"mismatched lengths: x has {len(x)} images but y has {len(y)} labels")
    if names is None:
        class_names = tuple(str(i) for i in range(int(y.max()) + 1 if len(y) else 0))
    else:
        class_names = tuple(str(n) for n in np.asarray(names).tolist())
    return _checked(x, y.astype(np.int64), class_names)


def _npz_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DatasetError(f"x must have shape (N,H,W) or (N,H,W,C) with C 1 or 3 (got {x.shape})")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0):
            raise DatasetError("float images must lie in [0, 1]")
        return np.round(x * 255.0).astype(np.uint8)
    raise DatasetError(f"x must be uint8 or float in [0, 1] (got {x.dtype})")


def _load_keras(location: str | None) -> LabelledImages:
    if location not in KERAS_CLASS_NAMES:
        raise DatasetError(
            f"unknown Keras dataset {location!r} (allowed: {', '.join(KERAS_CLASS_NAMES)})"
        )
    import keras

    return keras_images(location, getattr(keras.datasets, location).load_data)


def keras_images(name: str, load_data: Callable[[], tuple]) -> LabelledImages:
    """A Keras dataset from its `load_data()` ((train), (test)): train then test, the official
    test split kept as the given one."""
    try:
        (x_train, y_train), (x_test, y_test) = load_data()
    except Exception as exc:  # any download/IO failure: the usual cause is no network
        raise DatasetError(
            f"Keras dataset {name!r} must be downloaded and the machine seems offline "
            f"(or the download failed): {exc}"
        ) from exc
    x = np.concatenate([x_train, x_test]).astype(np.uint8)
    y = np.concatenate([y_train, y_test]).reshape(-1).astype(np.int64)
    data = _checked(x if x.ndim == 4 else x[..., None], y, KERAS_CLASS_NAMES[name])
    return replace(data, given_test_idx=np.arange(len(x_train), len(x)))


def _checked(x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...]) -> LabelledImages:
    if len(y) == 0:
        raise DatasetError("dataset is empty: no images")
    if y.min() < 0 or y.max() >= len(class_names):
        raise DatasetError(
            f"labels out of range: found {int(y.min())}..{int(y.max())} "
            f"but there are {len(class_names)} class names"
        )
    present = len(np.unique(y))
    if present < 2:
        raise DatasetError(f"a dataset needs at least two classes (found {present})")
    return LabelledImages(np.ascontiguousarray(x), y, class_names)


def split_dataset(
    data: LabelledImages,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Split:
    """Train/val/test by the holdout `data` would get with `seed` (see core.ml.holdout): the
    given test split where there is one, else a deterministic stratified split.

    Training a registered dataset uses the holdout stored with it, not this.
    """
    from core.ml.holdout import make_holdout, split_by_holdout

    holdout = make_holdout(data, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    return split_by_holdout(data, holdout)


def subsample(data: LabelledImages, n: int, seed: int = 0) -> LabelledImages:
    """A stratified random subset of `n` samples (all of them if `n` is not smaller)."""
    if n >= data.num_samples:
        return data
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(
        np.arange(data.num_samples), train_size=n, random_state=seed, stratify=data.y
    )
    return data.take(np.sort(keep))


# The loader of each source the catalog lists; importing fails if the two disagree.
LOADERS: dict[str, Callable[[str | None], LabelledImages]] = {
    "digits": lambda _location: _load_digits(),
    "folder": _load_folder,
    "npz": _load_npz,
    "keras": _load_keras,
}
require_same_names("dataset loaders", SOURCES, set(LOADERS))
