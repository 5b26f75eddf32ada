"""Tests for core.ml.training on tiny data: artifact, evaluation, cancel, fine-tune, extra data."""

from pathlib import Path

import keras
import numpy as np
import pytest

from core.ml.datasets import LabelledImages, Split, load_dataset, split_dataset, subsample
from core.ml.holdout_predictions import read_holdout_predictions
from core.ml.hparams import Hyperparameters
from core.ml.training import TrainConfig, TrainResult, sha256_of_file, train

EVAL_KEYS = {
    "accuracy", "loss", "precision_macro", "recall_macro", "f1_macro",
    "per_class", "confusion_matrix", "num_test",
}  # fmt: skip
QUICK = Hyperparameters(epochs=1, batch_size=32, augmentation=False, early_stopping_patience=0)


@pytest.fixture(scope="module")
def split() -> Split:
    return split_dataset(subsample(load_dataset("digits"), 300, seed=0), seed=0)


@pytest.fixture(scope="module")
def trained(split: Split, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("trained")
    return train(TrainConfig("seed-cnn", QUICK, out), split)


def test_train_one_epoch_writes_artifact_and_evaluation(trained: TrainResult, split: Split) -> None:
    assert trained.artifact_path.is_file()
    assert trained.artifact_sha256 == sha256_of_file(trained.artifact_path)
    assert len(trained.artifact_sha256) == 64
    assert not trained.cancelled and trained.epochs_run == 1
    ev = trained.evaluation
    assert set(ev) == EVAL_KEYS
    assert ev["num_test"] == split.test.num_samples
    assert sum(map(sum, ev["confusion_matrix"])) == split.test.num_samples
    assert len(ev["per_class"]) == 10 and ev["per_class"][3]["name"] == "3"
    assert sum(c["support"] for c in ev["per_class"]) == split.test.num_samples
    assert 0.0 <= ev["accuracy"] <= 1.0 and ev["loss"] > 0
    (row,) = trained.history
    assert row["epoch"] == 1 and row["seconds"] > 0
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(row)
    assert trained.framework_versions["backend"] == keras.backend.backend()


def test_test_predictions_saved(trained: TrainResult, split: Split) -> None:
    assert trained.predictions_path is not None
    assert trained.predictions_path.parent == trained.artifact_path.parent
    saved = read_holdout_predictions(trained.predictions_path)
    np.testing.assert_array_equal(saved.indices, split.test_idx)
    np.testing.assert_array_equal(saved.y_true, split.test.y)
    np.testing.assert_array_equal(saved.y_pred, saved.probs.argmax(1))
    accuracy = float((saved.y_pred == saved.y_true).mean())
    assert accuracy == pytest.approx(trained.evaluation["accuracy"])


def test_evaluation_matches_reloaded_artifact(trained: TrainResult, split: Split) -> None:
    model = keras.saving.load_model(trained.artifact_path)
    probs = keras.ops.convert_to_numpy(model(split.test.x.astype("float32"), training=False))
    accuracy = float((probs.argmax(1) == split.test.y).mean())
    assert accuracy == pytest.approx(trained.evaluation["accuracy"])


@pytest.mark.slow
def test_cancel_stops_after_first_epoch(split: Split, tmp_path: Path) -> None:
    reports: list[dict] = []
    hp = Hyperparameters(epochs=5, batch_size=32, augmentation=False, early_stopping_patience=0)
    result = train(
        TrainConfig("seed-cnn", hp, tmp_path),
        split,
        report=reports.append,
        should_cancel=lambda: len(reports) >= 1,
    )
    assert result.cancelled and result.epochs_run == 1
    assert [r["epoch"] for r in reports] == [1] and reports[0]["epochs_total"] == 5
    assert not result.artifact_path.exists() and result.artifact_sha256 == ""
    assert result.predictions_path is None


@pytest.mark.slow
def test_fine_tune_from_artifact(trained: TrainResult, split: Split, tmp_path: Path) -> None:
    lines: list[str] = []
    hp = Hyperparameters(
        epochs=1, learning_rate=1e-4, optimizer="sgd", augmentation=False, schedule="constant"
    )
    config = TrainConfig("seed-cnn", hp, tmp_path, base_model_path=trained.artifact_path)
    result = train(config, split, log=lines.append)
    assert result.artifact_path.is_file()
    assert result.artifact_sha256 != trained.artifact_sha256
    tuned = keras.saving.load_model(result.artifact_path)
    assert isinstance(tuned.optimizer, keras.optimizers.SGD)
    assert float(keras.ops.convert_to_numpy(tuned.optimizer.learning_rate)) == pytest.approx(1e-4)
    assert any("epoch 1/1" in line for line in lines)


def test_fine_tune_class_count_mismatch(trained: TrainResult, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 8, 8, 1), dtype=np.uint8)
    three = split_dataset(LabelledImages(x, np.repeat(np.arange(3), 10), ("a", "b", "c")))
    config = TrainConfig("seed-cnn", QUICK, tmp_path, base_model_path=trained.artifact_path)
    with pytest.raises(ValueError, match="predicts 10 classes but the dataset has 3"):
        train(config, three)


def test_fine_tune_input_shape_mismatch(trained: TrainResult, tmp_path: Path) -> None:
    x = np.zeros((100, 9, 9, 1), dtype=np.uint8)
    other = split_dataset(LabelledImages(x, np.repeat(np.arange(10), 10), tuple("0123456789")))
    config = TrainConfig("seed-cnn", QUICK, tmp_path, base_model_path=trained.artifact_path)
    with pytest.raises(ValueError, match=r"takes images of shape \(8, 8, 1\)"):
        train(config, other)


def _blank_image_probability(result: TrainResult, label: int) -> float:
    model = keras.saving.load_model(result.artifact_path, compile=False)
    probs = model(np.zeros((1, 8, 8, 1), dtype="float32"), training=False)
    return float(keras.ops.convert_to_numpy(probs)[0, label])


@pytest.mark.slow
def test_extra_train_is_appended(split: Split, tmp_path: Path) -> None:
    # 200 blank images labelled 4: a model that saw them calls a blank image a 4.
    extra = (np.zeros((200, 8, 8, 1), dtype=np.uint8), np.full(200, 4))
    hp = Hyperparameters(
        epochs=3, learning_rate=3e-3, augmentation=False, early_stopping_patience=0
    )
    with_extra = train(TrainConfig("seed-cnn", hp, tmp_path / "a"), split, extra_train=extra)
    plain = train(TrainConfig("seed-cnn", hp, tmp_path / "b"), split)
    assert _blank_image_probability(with_extra, 4) > 0.5
    assert _blank_image_probability(with_extra, 4) > 2 * _blank_image_probability(plain, 4)
    with pytest.raises(ValueError, match="shape"):
        train(
            TrainConfig("seed-cnn", QUICK, tmp_path / "c"),
            split,
            extra_train=(extra[0][:, :4], extra[1]),
        )


@pytest.mark.slow
def test_mixed_precision_restores_policy(split: Split, tmp_path: Path) -> None:
    config = TrainConfig("seed-cnn", QUICK, tmp_path, mixed_precision=True)
    result = train(config, split)
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(result.artifact_path, compile=False)
    assert model.layers[-1].dtype_policy.name == "float32"
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in model.layers)
