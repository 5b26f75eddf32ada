"""Tests for the training recipe: schedule, smoothed loss, batch size and precision by device,
the flip setting honoured by the built model, and a time budget respected on tiny data."""

from pathlib import Path

import keras
import numpy as np
import pytest

from core.ml import recipe
from core.ml.architectures import build_model
from core.ml.budget import StepTiming, epochs_for_budget
from core.ml.catalog import augmentation_layers, default_flip_safe
from core.ml.datasets import Split, load_dataset, split_dataset, subsample
from core.ml.hparams import Hyperparameters
from core.ml.training import TrainConfig, train


@pytest.fixture(scope="module")
def split() -> Split:
    return split_dataset(subsample(load_dataset("digits"), 300, seed=0), seed=0)


def _lr(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_warmup_cosine_reaches_peak_at_warmup_end_and_zero_at_the_end() -> None:
    schedule = recipe.WarmupCosine(0.01, warmup_steps=10, total_steps=100)
    assert _lr(schedule, 0) == pytest.approx(0.001)  # the first step: a tenth of the way up
    assert _lr(schedule, 4) == pytest.approx(0.005)
    assert _lr(schedule, 9) == pytest.approx(0.01)  # the tenth step: the peak
    assert _lr(schedule, 54) == pytest.approx(0.005, rel=1e-3)  # half-way down the cosine
    assert _lr(schedule, 99) == pytest.approx(0.0, abs=1e-9)
    assert _lr(schedule, 500) == pytest.approx(0.0, abs=1e-9)
    rates = [_lr(schedule, s) for s in range(9, 100)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_constant_schedule_is_the_learning_rate() -> None:
    hp = Hyperparameters(schedule="constant", learning_rate=0.02)
    assert recipe.learning_rate_schedule(hp, steps_per_epoch=10, epochs=3) == 0.02


def test_optimizer_decays_weights_but_not_normalisation() -> None:
    opt = recipe.make_optimizer(Hyperparameters(optimizer="adamw", weight_decay=0.1), 10, 2)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == pytest.approx(0.1)
    excluded = opt._exclude_from_weight_decay_pattern.pattern
    assert all(name in excluded for name in recipe.NO_DECAY)


def test_smoothed_loss_matches_the_smoothed_target() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 1])
    plain = recipe.SmoothedSparseCrossentropy(0.0)(labels, probs)
    expected = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    assert float(plain) == pytest.approx(float(expected), rel=1e-5)
    smoothed = float(recipe.SmoothedSparseCrossentropy(0.3)(labels, probs))
    target = np.eye(3)[labels] * 0.7 + 0.1  # 1 - 0.3 on the label, 0.3 spread over 3 classes
    assert smoothed == pytest.approx(float(-(target * np.log(probs)).sum(1).mean()), rel=1e-5)


def test_batch_size_by_device_and_data() -> None:
    auto = Hyperparameters()
    assert recipe.pick_batch_size(auto, 45_000, on_gpu=False) == recipe.DEVICE_BATCH["cpu"]
    assert recipe.pick_batch_size(auto, 45_000, on_gpu=True) == recipe.DEVICE_BATCH["gpu"]
    # 1,257 images: an epoch keeps at least 32 steps.
    assert recipe.pick_batch_size(auto, 1257, on_gpu=False) == 32
    assert recipe.pick_batch_size(auto, 50, on_gpu=True) == recipe.MIN_AUTO_BATCH
    assert recipe.pick_batch_size(Hyperparameters(batch_size=100), 50, on_gpu=True) == 100


def test_precision_by_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert not recipe.cpu_has_bfloat16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16\n")
    assert recipe.cpu_has_bfloat16(cpuinfo)
    assert not recipe.cpu_has_bfloat16(tmp_path / "missing")
    auto, f32 = Hyperparameters(), Hyperparameters(precision="float32")
    assert recipe.pick_precision(auto, on_gpu=True) == "mixed_float16"
    assert recipe.pick_precision(f32, on_gpu=True) == "float32"
    monkeypatch.setattr(recipe, "cpu_has_bfloat16", lambda: False)
    assert recipe.pick_precision(auto, on_gpu=False) == "float32"
    assert recipe.pick_precision(Hyperparameters(precision="mixed"), False) == "mixed_bfloat16"
    monkeypatch.setattr(recipe, "cpu_has_bfloat16", lambda: True)
    assert recipe.pick_precision(auto, on_gpu=False) == "mixed_bfloat16"


def _flip_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RandomFlip)]


def test_flips_only_where_the_data_allows() -> None:
    unsafe = build_model("resnet-fast", (32, 32, 3), 10, augmentation=True, flip_safe=False)
    assert _flip_layers(unsafe) == []
    assert {"aug_translate", "aug_rotate", "aug_zoom"} <= {layer.name for layer in unsafe.layers}
    safe = build_model("resnet-fast", (32, 32, 3), 10, augmentation=True, flip_safe=True)
    (flip,) = _flip_layers(safe)
    assert flip.name == "aug_flip" and flip.mode == "horizontal"
    assert not _flip_layers(build_model("resnet-fast", (32, 32, 3), 10, augmentation=False))
    # Images already 32x32 are not resized; the catalog describes what is applied.
    assert "resize" not in {layer.name for layer in safe.layers}
    assert augmentation_layers(True)[0] == "horizontal flip"
    assert not any("flip" in words for words in augmentation_layers(False))


def test_default_flip_safety_by_source() -> None:
    assert default_flip_safe("keras", "cifar10") and default_flip_safe("keras", "fashion_mnist")
    assert not default_flip_safe("keras", "mnist") and not default_flip_safe("digits")
    assert not default_flip_safe("folder", "/data/photos") and not default_flip_safe("npz", "x")


def test_trained_model_keeps_the_flip_setting(split: Split, tmp_path: Path) -> None:
    hp = Hyperparameters(epochs=1, batch_size=64, precision="float32")
    result = train(TrainConfig("seed-cnn", hp, tmp_path, flip_safe=False), split)
    model = keras.saving.load_model(result.artifact_path, compile=False)
    assert _flip_layers(model) == [] and "aug_translate" in {layer.name for layer in model.layers}


def test_epochs_fit_the_budget() -> None:
    timing = StepTiming(step_s=0.1, trace_s=2.0, batch=100)  # 1,000 images a second
    # 10,000 images: 10 s an epoch; about 88 s of 100 usable (a safety margin, tracing).
    assert epochs_for_budget(
        100, timing, num_train=10_000, num_val=0, num_test=0, max_epochs=50
    ) == 8  # fmt: skip
    assert (
        epochs_for_budget(100, timing, num_train=10_000, num_val=0, num_test=0, max_epochs=3) == 3
    )
    assert epochs_for_budget(5, timing, num_train=10_000, num_val=0, num_test=0, max_epochs=3) == 1


def test_schedule_in_training_is_what_the_hyperparameters_say(split: Split, tmp_path: Path) -> None:
    # 210 training images in batches of 30: 7 steps an epoch; 5 epochs, warm-up a fifth = 1 epoch.
    hp = Hyperparameters(
        epochs=5, batch_size=30, learning_rate=0.004, warmup_fraction=0.2, augmentation=False,
        precision="float32",
    )  # fmt: skip
    result = train(TrainConfig("seed-cnn", hp, tmp_path), split)
    assert len(split.train.y) == 210 and result.recipe["steps_per_epoch"] == 7
    rates = [row["learning_rate"] for row in result.history]
    # At the end of the warm-up epoch the next step is the first past the peak.
    assert rates[0] == pytest.approx(0.004, rel=0.02)
    # After 21 of 35 steps the next is step 22: 15 of the 28 steps of the cosine.
    assert rates[2] == pytest.approx(0.002 * (1 + np.cos(np.pi * 15 / 28)), rel=1e-4)
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_time_budget_respected_within_ten_percent(split: Split, tmp_path: Path) -> None:
    hp = Hyperparameters(
        epochs=500, batch_size=16, time_budget_minutes=1.0, augmentation=False,
        precision="float32",
    )  # fmt: skip
    result = train(TrainConfig("seed-cnn", hp, tmp_path), split)
    assert result.train_seconds <= 1.1 * 60.0
    assert 1 <= result.epochs_run == result.recipe["epochs"] < 500
    # The schedule ran to its end rather than being cut: the last rate is the schedule's zero.
    assert result.history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)
    assert result.history[-1]["epochs_total"] == result.epochs_run
