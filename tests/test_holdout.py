"""One holdout per dataset: fixed at registration, given test splits kept, never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.datasets import dataset_holdout, register_loaded_dataset
from core.ml.datasets import DatasetError, LabelledImages, keras_images, load_dataset
from core.ml.holdout import Holdout, make_holdout, split_by_holdout
from core.ml.images import encode_png
from db.engine import session_scope
from db.repo.datasets import DatasetRecord, fix_holdout, get_dataset, register_dataset


def _fake_cifar(n_train: int = 60, n_test: int = 20):
    """What keras.datasets.cifar10.load_data returns, in miniature: labels shaped (N, 1)."""
    rng = np.random.default_rng(0)

    def part(n: int):
        x = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
        return x, (np.arange(n) % 10).reshape(-1, 1)

    return lambda: (part(n_train), part(n_test))


def test_a_keras_dataset_keeps_its_official_test_split():
    data = keras_images("cifar10", _fake_cifar())
    assert data.num_samples == 80  # train then test
    holdout = make_holdout(data)
    assert holdout.origin == "given"
    assert holdout.test_idx.tolist() == list(range(60, 80))
    assert set(holdout.val_idx) < set(range(60)), "validation comes from train, never from test"
    assert set(data.y[holdout.val_idx]) == set(range(10))  # stratified: every class
    assert np.array_equal(make_holdout(data, seed=7).test_idx, holdout.test_idx)
    split = split_by_holdout(data, holdout)
    assert len(split.train_idx) + len(split.val_idx) == 60
    assert np.array_equal(split.test.x, data.x[60:])


def _png_folder(root: Path, parts: dict[str, int]) -> None:
    """root/<part>/<class>/*.png with `n` images per class (class a dark, class b light)."""
    for part, n in parts.items():
        for label, shade in (("a", 10), ("b", 240)):
            folder = root / part / label
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.full((6, 6, 1), shade + i, dtype=np.uint8)
                (folder / f"{part}-{i}.png").write_bytes(encode_png(pixels))


def test_a_folder_with_train_and_test_keeps_its_test_set(tmp_path: Path):
    _png_folder(tmp_path, {"train": 10, "test": 3})
    data = load_dataset("folder", str(tmp_path))
    assert data.class_names == ("a", "b") and data.num_samples == 26
    assert data.given_test_idx.tolist() == list(range(20, 26))
    holdout = make_holdout(data)
    split = split_by_holdout(data, holdout)
    assert holdout.test_idx.tolist() == list(range(20, 26))
    assert sorted(split.test.y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert set(split.val_idx) < set(range(20)) and len(split.val_idx) == 2
    assert len(split.train_idx) == 18


def test_a_folder_with_val_keeps_it_too(tmp_path: Path):
    _png_folder(tmp_path, {"train": 4, "val": 2, "test": 3})
    data = load_dataset("folder", str(tmp_path))
    holdout = make_holdout(data)
    assert holdout.val_idx.tolist() == list(range(8, 12))
    assert holdout.test_idx.tolist() == list(range(12, 18))
    assert split_by_holdout(data, holdout).train_idx.tolist() == list(range(8))


def test_a_split_folder_with_a_class_train_lacks_is_refused(tmp_path: Path):
    _png_folder(tmp_path, {"train": 4, "test": 2})
    (tmp_path / "test" / "c").mkdir()
    with pytest.raises(DatasetError, match="test/ has classes that train/ lacks: c"):
        load_dataset("folder", str(tmp_path))


def test_a_split_folder_with_a_stray_folder_is_refused(tmp_path: Path):
    _png_folder(tmp_path, {"train": 4, "test": 2})
    (tmp_path / "extra").mkdir()
    with pytest.raises(DatasetError, match="only val/ beside them"):
        load_dataset("folder", str(tmp_path))


def _pooled(n_per_class: int = 20) -> LabelledImages:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), n_per_class)
    return LabelledImages(rng.integers(0, 256, (len(y), 4, 4, 1), dtype=np.uint8), y, tuple("abc"))


def test_a_pooled_holdout_is_disjoint_round_trips_and_names_its_test_part():
    data = _pooled()
    holdout = make_holdout(data)
    assert holdout.origin == "seeded"
    assert not np.intersect1d(holdout.val_idx, holdout.test_idx).size
    again = Holdout.from_bytes(holdout.to_bytes())
    assert np.array_equal(again.test_idx, holdout.test_idx)
    assert again.fingerprint == holdout.fingerprint
    assert make_holdout(data, seed=1).fingerprint != holdout.fingerprint
    with pytest.raises(DatasetError, match="unreadable"):
        Holdout.from_bytes(b"not a holdout")


def test_a_holdout_refuses_data_of_another_size():
    holdout = make_holdout(_pooled())
    with pytest.raises(DatasetError, match="changed since it was registered"):
        split_by_holdout(_pooled(21), holdout)


def test_training_refuses_a_split_whose_train_part_holds_test_samples(tmp_path: Path):
    from core.ml.datasets import Split
    from core.ml.hparams import Hyperparameters
    from core.ml.training import TrainConfig, train

    data = _pooled()
    good = split_by_holdout(data, make_holdout(data))
    leaky_train = np.union1d(good.train_idx, good.test_idx[:1])
    leaky = Split(
        data.take(leaky_train), good.val, good.test, leaky_train, good.val_idx, good.test_idx
    )
    config = TrainConfig("seed-cnn", Hyperparameters.from_dict({"epochs": 1}), tmp_path)
    with pytest.raises(ValueError, match="1 training samples are also validation/test"):
        train(config, leaky)


def test_registration_fixes_the_holdout_and_first_use_fixes_an_old_one(registry):
    data = _pooled()
    with session_scope() as s:
        info = register_loaded_dataset(
            session=s, name="pooled", source="npz", location="p.npz", data=data
        )
        assert info.holdout_fingerprint == make_holdout(data).fingerprint
        assert info.holdout_summary["num_test"] == len(make_holdout(data).test_idx)
        assert dataset_holdout(session=s, dataset=info, data=data).fingerprint == (
            info.holdout_fingerprint
        )
        old = register_dataset(
            session=s,
            record=DatasetRecord(
                name="old",
                source="npz",
                location="o.npz",
                class_names=list("abc"),
                input_shape=[4, 4, 1],
                num_samples=60,
                fingerprint=data.fingerprint,
            ),
        )
        assert old.holdout_fingerprint is None
        fixed = dataset_holdout(session=s, dataset=old, data=data)
        assert get_dataset(session=s, dataset_id=old.id).holdout_fingerprint == fixed.fingerprint
        # Fixed for good: a later holdout is not stored over it.
        other = make_holdout(data, seed=5)
        assert not fix_holdout(
            session=s, dataset_id=old.id, holdout=other.to_bytes(),
            holdout_fingerprint=other.fingerprint, holdout_summary=other.summary(),
        )  # fmt: skip
        assert dataset_holdout(session=s, dataset=old, data=data).fingerprint == fixed.fingerprint


def test_data_changed_since_registration_is_refused(registry):
    data = _pooled()
    with session_scope() as s:
        info = register_loaded_dataset(
            session=s, name="pooled", source="npz", location="p.npz", data=data
        )
        changed = LabelledImages(255 - data.x, data.y, data.class_names)
        with pytest.raises(DatasetError, match="changed since its holdout was fixed"):
            dataset_holdout(session=s, dataset=info, data=changed)
