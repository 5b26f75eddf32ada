"""Tests for core.ml.datasets: every loader, every refused input, splits and fingerprints."""

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from core.ml.datasets import (
    DatasetError,
    LabelledImages,
    load_dataset,
    split_dataset,
    subsample,
)


def _save(path: Path, size: tuple[int, int], mode: str = "L", value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, size, colour).save(path)


def _three_class_arrays(n_per_class: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), n_per_class)
    x = rng.random((len(y), 6, 6)).astype(np.float32)
    return x, y


def test_digits_scaled_to_uint8() -> None:
    data = load_dataset("digits")
    assert data.x.dtype == np.uint8 and data.y.dtype == np.int64
    assert data.input_shape == (8, 8, 1)
    assert data.num_samples == 1797 and data.num_classes == 10
    assert data.class_names == tuple(str(i) for i in range(10))
    assert int(data.x.max()) == 255 and int(data.x.min()) == 0
    # sklearn's first digit has a 13 at row 0, col 3: round(13 * 255 / 16) == 207
    assert int(data.x[0, 0, 3, 0]) == 207


def test_folder_mixed_sizes_and_modes(tmp_path: Path) -> None:
    _save(tmp_path / "cat" / "a.png", (12, 10))
    _save(tmp_path / "cat" / "b.PNG", (12, 10), "RGB")
    _save(tmp_path / "dog" / "c.jpg", (20, 20), "RGB")
    _save(tmp_path / "dog" / "d.jpeg", (12, 10))
    (tmp_path / "dog" / "notes.txt").write_text("not an image, and not looked at")
    data = load_dataset("folder", str(tmp_path))
    assert data.class_names == ("cat", "dog")
    assert data.input_shape == (10, 12, 3)  # most common size (HxW), colour because one is RGB
    assert data.y.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(data.x[0, :, :, 0], np.full((10, 12), 100))


def test_folder_all_gray_stays_one_channel(tmp_path: Path) -> None:
    for name in ("x", "y"):
        for i in range(2):
            _save(tmp_path / name / f"{i}.png", (5, 5))
    assert load_dataset("folder", str(tmp_path)).input_shape == (5, 5, 1)


def test_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("folder", str(tmp_path / "nope"))


def test_folder_without_classes_is_empty(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_dataset("folder", str(tmp_path))


def test_folder_single_class(tmp_path: Path) -> None:
    _save(tmp_path / "only" / "a.png", (4, 4))
    _save(tmp_path / "only" / "b.png", (4, 4))
    with pytest.raises(DatasetError, match="at least two classes"):
        load_dataset("folder", str(tmp_path))


def test_folder_unreadable_image_names_file(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "ok.png", (4, 4))
    bad = tmp_path / "b" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset("folder", str(tmp_path))


def test_npz_float_scaled_and_names_kept(tmp_path: Path) -> None:
    x, y = _three_class_arrays()
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, class_names=np.array(["a", "b", "c"]))
    data = load_dataset("npz", str(path))
    assert data.input_shape == (6, 6, 1) and data.x.dtype == np.uint8
    assert data.class_names == ("a", "b", "c")
    assert int(data.x[0, 0, 0, 0]) == round(float(x[0, 0, 0]) * 255)


def test_npz_uint8_kept_and_default_names(tmp_path: Path) -> None:
    x = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.array([0, 1, 0, 1]))
    data = load_dataset("npz", str(path))
    np.testing.assert_array_equal(data.x, x)
    assert data.class_names == ("0", "1")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 2, 2))}, "lacks key"),
        ({"x": np.zeros((3, 2, 2)), "y": np.array([0, 1])}, "mismatched lengths"),
        (
            {
                "x": np.zeros((3, 2, 2)),
                "y": np.array([0, 1, 2]),
                "class_names": np.array(["a", "b"]),
            },
            "labels out of range",
        ),
        ({"x": np.zeros((3, 2, 2)), "y": np.array([0, -1, 1])}, "labels out of range"),
        ({"x": np.zeros((3, 2, 2)), "y": np.array([1, 1, 1])}, "at least two classes"),
        ({"x": np.full((2, 2, 2), 3.0), "y": np.array([0, 1])}, r"\[0, 1\]"),
    ],
)
def test_npz_refused(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset("npz", str(path))


def test_npz_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("npz", str(tmp_path / "none.npz"))


def test_keras_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline() -> None:
        raise OSError("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DatasetError, match="must be downloaded.*offline") as info:
        load_dataset("keras", "mnist")
    assert isinstance(info.value.__cause__, OSError)


def test_keras_concatenates_and_names(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_cifar() -> tuple:
        x = np.zeros((4, 32, 32, 3), dtype=np.uint8)
        return (x, np.array([[0], [1], [2], [3]])), (x[:2], np.array([[9], [8]]))

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", fake_cifar)
    data = load_dataset("keras", "cifar10")
    assert data.num_samples == 6 and data.y.tolist() == [0, 1, 2, 3, 9, 8]
    assert data.class_names[0] == "airplane" and data.class_names[9] == "truck"


def test_keras_unknown_name_lists_allowed() -> None:
    with pytest.raises(DatasetError, match="cifar10, mnist, fashion_mnist"):
        load_dataset("keras", "imagenet")


def test_unknown_source_lists_allowed() -> None:
    with pytest.raises(DatasetError, match="digits, folder, npz, keras"):
        load_dataset("s3")


def test_loaders_are_the_catalog_sources() -> None:
    from core.ml.catalog import DATASET_SOURCES
    from core.ml.datasets import LOADERS, SOURCES

    assert SOURCES is DATASET_SOURCES and set(LOADERS) == set(DATASET_SOURCES)


def test_split_is_deterministic_and_stratified() -> None:
    data = load_dataset("digits")
    first, again = split_dataset(data, seed=3), split_dataset(data, seed=3)
    other = split_dataset(data, seed=4)
    np.testing.assert_array_equal(first.test_idx, again.test_idx)
    np.testing.assert_array_equal(first.train_idx, again.train_idx)
    assert not np.array_equal(first.test_idx, other.test_idx)
    all_idx = np.concatenate([first.train_idx, first.val_idx, first.test_idx])
    assert sorted(all_idx.tolist()) == list(range(data.num_samples))
    assert abs(len(first.test_idx) - 0.15 * data.num_samples) <= 1
    full = np.bincount(data.y) / data.num_samples
    for part in (first.train, first.val, first.test):
        assert np.abs(np.bincount(part.y, minlength=10) / part.num_samples - full).max() < 0.02
    np.testing.assert_array_equal(first.test.x, data.x[first.test_idx])


def test_split_refuses_tiny_class() -> None:
    x = np.zeros((12, 2, 2, 1), dtype=np.uint8)
    y = np.array([0] * 10 + [1] * 2)
    with pytest.raises(DatasetError, match="too few samples.*'1' has 2"):
        split_dataset(LabelledImages(x, y, ("0", "1")))


def test_fingerprint_stable_and_sensitive() -> None:
    data = load_dataset("digits")
    assert data.fingerprint == load_dataset("digits").fingerprint
    assert len(data.fingerprint) == 64
    x = data.x.copy()
    x[0, 0, 0, 0] ^= 1
    assert LabelledImages(x, data.y, data.class_names).fingerprint != data.fingerprint
    renamed = LabelledImages(data.x, data.y, ("zero", *data.class_names[1:]))
    assert renamed.fingerprint != data.fingerprint


def test_subsample_is_stratified() -> None:
    small = subsample(load_dataset("digits"), 200, seed=0)
    assert small.num_samples == 200
    assert np.bincount(small.y).min() >= 18
