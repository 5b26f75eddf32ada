"""Tests for the training recipe: schedule, smoothed loss, batch size and precision by device,
the flip setting honoured by the built model, and a time budget respected on tiny data."""

from pathlib import Path

import keras
import numpy as np
import pytest

from core.ml import budget, recipe
from core.ml.architectures import build_model
from core.ml.budget import BudgetKeeper, StepTiming, epochs_for_budget
from core.ml.catalog import augmentation_layers, default_flip_safe
from core.ml.datasets import Split, load_dataset, split_dataset, subsample
from core.ml.hparams import Hyperparameters
from core.ml.inference import Predictor, load_model
from core.ml.mirror import is_mirror_averaged, trained_part
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


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run_epochs(keeper: BudgetKeeper, clock: _Clock, seconds: list[float]) -> list[int]:
    """Epochs of the given lengths until the keeper stops; the plan after each."""
    model = type("Model", (), {"stop_training": False})()
    keeper.set_model(model)
    plans = []
    for epoch, took in enumerate(seconds):
        keeper.on_epoch_begin(epoch)
        clock.now += took
        keeper.on_epoch_end(epoch)
        plans.append(keeper.epochs)
        if model.stop_training:
            break
    return plans


def test_keeper_shortens_a_plan_that_would_overrun() -> None:
    clock, refits = _Clock(), []
    keeper = BudgetKeeper(
        deadline=100.0, tail_s=5.0, epochs=10, max_epochs=50, refit=refits.append, clock=clock
    )
    # Planned at 9 s an epoch, the epochs take 15 s: after the first, 5 more fit in 80 s.
    plans = _run_epochs(keeper, clock, [15.0] * 20)
    assert plans[:2] == [6, 6] and refits == [6] and keeper.changes == [(1, 6)]
    assert len(plans) == 6 and clock.now + keeper.tail_s <= keeper.deadline


def test_keeper_lengthens_only_by_what_surely_fits() -> None:
    clock, refits = _Clock(), []
    keeper = BudgetKeeper(
        deadline=100.0, tail_s=0.0, epochs=5, max_epochs=50, refit=refits.append, clock=clock
    )
    # 8 s epochs: after the second (the first that traced nothing), 10 more fit in 84 s;
    # one is kept spare: 11 epochs in all.
    plans = _run_epochs(keeper, clock, [8.0] * 20)
    assert plans[:2] == [5, 11] and refits == [11] and len(plans) == 11 and clock.now == 88.0
    # One more epoch fitting is not reason enough to trace the step function again.
    keeper = BudgetKeeper(
        deadline=100.0, tail_s=0.0, epochs=5, max_epochs=50, refit=refits.append, clock=_Clock()
    )
    keeper.first_s, keeper.clean = 15.0, [15.0]
    assert keeper.replan(1, 15.0) == 5  # 5 more fit in 85 s: 6 in all, one over the plan
    assert keeper.replan(1, 10.0) == 6  # 6 more fit in 90 s: 7 in all, one kept spare


def test_keeper_does_not_count_tracing_as_pace() -> None:
    clock = _Clock()
    keeper = BudgetKeeper(
        deadline=110.0, tail_s=0.0, epochs=9, max_epochs=50, refit=lambda n: None,
        trace_s=6.0, clock=clock,
    )  # fmt: skip
    # The first epoch's 18 s hold 8 s of tracing (training and validation): a 10 s pace, so
    # 9 more fit in the 92 s left. At an 18 s pace only 5 would.
    plans = _run_epochs(keeper, clock, [18.0] + [10.0] * 20)
    assert keeper.first_s == pytest.approx(10.0) and plans[0] == 9


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


def _budget_of(minutes: float) -> Hyperparameters:
    """At most 500 epochs of tiny data in `minutes`: the budget, not the epochs, ends it."""
    return Hyperparameters(
        epochs=500, batch_size=16, time_budget_minutes=minutes, augmentation=False,
        precision="float32",
    )  # fmt: skip


def test_time_budget_respected_within_ten_percent(split: Split, tmp_path: Path) -> None:
    result = train(TrainConfig("seed-cnn", _budget_of(1.0), tmp_path), split)
    # Within 10 % either way: a budget is also there to be used.
    assert 0.9 * 60.0 <= result.train_seconds <= 1.1 * 60.0
    assert 1 <= result.epochs_run == result.recipe["epochs"] < 500
    # The schedule ran to its end rather than being cut: the last rate is the schedule's zero.
    assert result.history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)
    assert result.history[-1]["epochs_total"] == result.epochs_run


def test_budget_kept_when_the_epochs_run_slower_than_timed(
    split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = budget.time_training_steps

    def optimistic(*args, **kwargs) -> StepTiming:
        timing = real(*args, **kwargs)  # timed as the run would, then read as 20x faster
        return StepTiming(step_s=timing.step_s / 20, trace_s=timing.trace_s, batch=timing.batch)

    monkeypatch.setattr(budget, "time_training_steps", optimistic)
    # 36 s: the keeper lengthens a plan only when two more epochs fit, so up to about two
    # epochs may stay unused; under CI's load that was more than a tenth of 24 s (21.4 s and
    # 21.5 s used, in two runs).
    result = train(TrainConfig("seed-cnn", _budget_of(0.6), tmp_path), split)
    assert 0.9 * 36.0 <= result.train_seconds <= 1.1 * 36.0
    # Planned for 20x the epochs, the schedule was shortened once the first epoch's time was
    # known, and still decayed to its end.
    assert result.recipe["replanned"][0][0] == 1
    assert result.recipe["replanned"][0][1] < 500
    assert result.epochs_run == result.recipe["epochs"] == result.history[-1]["epochs_total"]
    assert result.history[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)


def test_mirror_safe_models_average_an_image_and_its_mirror(split: Split, tmp_path: Path) -> None:
    hp = Hyperparameters(epochs=1, batch_size=64, precision="float32")
    result = train(TrainConfig("seed-cnn", hp, tmp_path / "a", flip_safe=True), split)
    served = Predictor(result.artifact_path, warmup_sizes=())
    assert is_mirror_averaged(served.model) and result.recipe["mirror_average"] is True
    x = split.test.x[:8]
    probs = served.predict_batch(x)
    # The served answer does not change with a mirrored image, and is the network's mean.
    np.testing.assert_allclose(probs, served.predict_batch(x[:, :, ::-1]), atol=1e-5)
    network = trained_part(served.model)
    pair = network.predict(x, verbose=0) + network.predict(x[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(probs, pair / 2, atol=1e-5)
    # The scored accuracy is the averaged model's.
    expected = float(np.mean(served.predict_batch(split.test.x).argmax(1) == split.test.y))
    assert result.evaluation["accuracy"] == pytest.approx(expected)
    # Fine-tuned, it is wrapped once again, not twice.
    base = TrainConfig(
        "seed-cnn", hp, tmp_path / "b", base_model_path=result.artifact_path, flip_safe=True
    )
    tuned = load_model(train(base, split).artifact_path)
    assert is_mirror_averaged(tuned) and not is_mirror_averaged(trained_part(tuned))


def test_no_mirror_average_where_mirrors_change_the_class(split: Split, tmp_path: Path) -> None:
    hp = Hyperparameters(epochs=1, batch_size=64, precision="float32")
    result = train(TrainConfig("seed-cnn", hp, tmp_path, flip_safe=False), split)
    model = load_model(result.artifact_path)
    assert not is_mirror_averaged(model) and "mirror_average" not in result.recipe
    x = split.test.x[:8].astype("float32")
    assert not np.allclose(model.predict(x, verbose=0), model.predict(x[:, :, ::-1], verbose=0))
