"""Train one model version: build or fine-tune, fit with progress and cancel, save, evaluate."""

from __future__ import annotations

import hashlib
import importlib
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from core.ml import budget, feed
from core.ml.architectures import build_model
from core.ml.datasets import Split
from core.ml.evaluation import predict_probabilities, scores_from_probabilities
from core.ml.holdout_predictions import write_holdout_predictions
from core.ml.hparams import Hyperparameters
from core.ml.mirror import trained_part, with_mirror_average
from core.ml.recipe import (
    WarmupCosine,
    learning_rate_schedule,
    make_loss,
    make_optimizer,
    pick_batch_size,
    pick_precision,
    schedule_steps,
)

Report = Callable[[dict[str, Any]], None]
ShouldCancel = Callable[[], bool]
Log = Callable[[str], None]

ARTIFACT_NAME = "model.keras"


@dataclass(frozen=True)
class TrainConfig:
    """What to train: architecture, hyperparameters, where to write, optional base model."""

    architecture: str
    hyperparameters: Hyperparameters
    output_dir: Path
    base_model_path: Path | None = None
    # True on a GPU: mixed float16 unless the hyperparameters ask for float32 (core.ml.recipe).
    mixed_precision: bool = False
    # Whether a mirrored image keeps its class (the dataset's setting): chooses the augmentation.
    flip_safe: bool = False


@dataclass
class TrainResult:
    """What a training run produced; `cancelled` runs have no artifact (see `train`)."""

    history: list[dict[str, Any]]
    evaluation: dict[str, Any]
    artifact_path: Path
    artifact_sha256: str
    train_seconds: float
    epochs_run: int
    cancelled: bool
    framework_versions: dict[str, str] = field(default_factory=dict)
    # Test-split predictions (read with core.ml.holdout_predictions); None when cancelled.
    predictions_path: Path | None = None
    # What the recipe chose: batch size, precision, epochs (fitted to a time budget), steps.
    recipe: dict[str, Any] = field(default_factory=dict)


class ProgressCallback(keras.callbacks.Callback):
    """Reports each finished epoch and stops training when `should_cancel` says so.

    Only epoch hooks are used: per-batch hooks would cost training throughput.
    """

    def __init__(
        self,
        epochs_total: int,
        report: Report | None = None,
        should_cancel: ShouldCancel | None = None,
        log: Log | None = None,
    ) -> None:
        super().__init__()
        self.epochs_total = epochs_total
        self.report = report
        self.should_cancel = should_cancel
        self.log = log
        self.rows: list[dict[str, Any]] = []
        self.cancelled = False
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        row: dict[str, Any] = {"epoch": epoch + 1, "epochs_total": self.epochs_total}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            row[key] = float(logs[key]) if key in logs else None
        # The rate of the next step: at the last epoch's end, where the schedule finished.
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = time.perf_counter() - self._epoch_started
        self.rows.append(row)
        if self.log:
            self.log(_format_epoch(row))
        if self.report:
            self.report(dict(row))
        if self.should_cancel and self.should_cancel():
            self.cancelled = True
            self.model.stop_training = True
            if self.log:
                self.log(f"cancel requested: stopping after epoch {epoch + 1}")


def _format_epoch(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}/{row['epochs_total']}"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if row[key] is not None:
            parts.append(f"{key}={row[key]:.4f}")
    parts.append(f"({row['seconds']:.1f}s)")
    return " ".join(parts)


def framework_versions() -> dict[str, str]:
    """Versions of Keras, its backend, numpy and Python, for the model version record."""
    backend = keras.backend.backend()
    try:
        backend_version = str(importlib.import_module(backend).__version__)
    except (ImportError, AttributeError):
        backend_version = "unknown"
    return {
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": backend_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _load_base_model(path: Path, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    # A mirror-averaged artifact is fine-tuned as the network it wraps (and wrapped again).
    model = trained_part(keras.saving.load_model(path, compile=False))
    outputs = int(model.outputs[0].shape[-1])
    if outputs != num_classes:
        raise ValueError(
            f"base model {path.name} predicts {outputs} classes but the dataset has {num_classes}"
        )
    expected = tuple(model.inputs[0].shape[1:])
    if len(expected) != len(input_shape) or any(
        e is not None and e != got for e, got in zip(expected, input_shape, strict=True)
    ):
        raise ValueError(
            f"base model {path.name} takes images of shape {expected} "
            f"but the dataset's are {tuple(input_shape)}"
        )
    return model


def _prepare_model(config: TrainConfig, split: Split, policy: str) -> keras.Model:
    hp = config.hyperparameters
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        if config.base_model_path is not None:
            return _load_base_model(
                Path(config.base_model_path), split.train.input_shape, split.train.num_classes
            )
        return build_model(
            config.architecture,
            split.train.input_shape,
            split.train.num_classes,
            augmentation=hp.augmentation,
            seed=hp.seed,
            flip_safe=config.flip_safe,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _plan(
    config: TrainConfig, model: keras.Model, split: Split, x: np.ndarray, y: np.ndarray,
    started: float, log: Log | None,
) -> tuple[dict[str, Any], budget.StepTiming | None]:  # fmt: skip
    """Batch size, epochs and steps of this run; with a time budget, the epochs that fit it
    and the timing they were fitted from."""
    hp = config.hyperparameters
    batch = pick_batch_size(hp, len(y), config.mixed_precision)
    plan: dict[str, Any] = {"batch_size": batch, "epochs": hp.epochs}
    plan["steps_per_epoch"] = math.ceil(len(y) / batch)
    timing = None
    if hp.budget_seconds is not None:
        timing = budget.time_training_steps(model, make_loss(hp), x, y, batch)
        remaining = hp.budget_seconds - (time.perf_counter() - started)
        plan["epochs"] = budget.epochs_for_budget(
            remaining, timing, num_train=len(y), num_val=len(split.val.y),
            num_test=_scored_images(config, split), max_epochs=hp.epochs,
        )  # fmt: skip
        plan["budget_images_per_s"] = round(timing.images_per_s, 1)
        if log:
            log(
                f"time budget {hp.time_budget_minutes:g} min: {timing.images_per_s:.0f} images/s, "
                f"{timing.trace_s:.0f}s tracing "
                f"measured, so {plan['epochs']} of at most {hp.epochs} epochs"
            )
    return plan, timing


def _scored_images(config: TrainConfig, split: Split) -> int:
    """Images the finished model scores: the test split, twice where mirrors are averaged."""
    return len(split.test.y) * (2 if config.flip_safe else 1)


def _training_arrays(
    split: Split, extra_train: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    x, y = split.train.x, split.train.y
    if extra_train is None or len(extra_train[1]) == 0:
        return x, y
    extra_x, extra_y = np.asarray(extra_train[0]), np.asarray(extra_train[1], dtype=np.int64)
    if extra_x.shape[1:] != x.shape[1:] or len(extra_x) != len(extra_y):
        raise ValueError(
            f"extra training samples must be images of shape {x.shape[1:]} with one label each "
            f"(got {extra_x.shape} images, {len(extra_y)} labels)"
        )
    if extra_y.min() < 0 or extra_y.max() >= split.train.num_classes:
        raise ValueError(f"extra training labels must lie in 0..{split.train.num_classes - 1}")
    return np.concatenate([x, extra_x.astype(x.dtype)]), np.concatenate([y, extra_y])


def _require_disjoint(split: Split) -> None:
    """Training never sees a validation or test sample: the holdout stays a holdout."""
    held_out = np.union1d(split.val_idx, split.test_idx)
    leaked = np.intersect1d(split.train_idx, held_out)
    if leaked.size:
        raise ValueError(
            f"{leaked.size} training samples are also validation/test samples "
            f"(e.g. sample {int(leaked[0])}): the split must come from the dataset's holdout"
        )


def _budget_keeper(
    model: keras.Model, hp: Hyperparameters, schedule: float | WarmupCosine,
    plan: dict[str, Any], timing: budget.StepTiming, deadline: float, num_test: int,
    progress: ProgressCallback,
) -> budget.BudgetKeeper:  # fmt: skip
    """Re-fits the schedule's length to the budget as the epochs' real times come in."""

    def refit(epochs: int) -> None:
        progress.epochs_total = epochs
        if isinstance(schedule, WarmupCosine):
            schedule.refit(*schedule_steps(hp, plan["steps_per_epoch"], epochs))
            model.make_train_function(force=True)  # the step function holds the old length

    return budget.BudgetKeeper(
        deadline=deadline, tail_s=budget.tail_seconds(timing, num_test), epochs=plan["epochs"],
        max_epochs=hp.epochs, refit=refit, trace_s=timing.trace_s,
    )  # fmt: skip


def _callbacks(
    hp: Hyperparameters, progress: ProgressCallback, keeper: budget.BudgetKeeper | None
) -> list[keras.callbacks.Callback]:
    # The keeper goes first: the epoch's progress row then shows the plan as it now stands.
    callbacks: list[keras.callbacks.Callback] = [keeper] if keeper else []
    callbacks.append(progress)
    if hp.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=hp.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return callbacks


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train(
    config: TrainConfig,
    split: Split,
    report: Report | None = None,
    should_cancel: ShouldCancel | None = None,
    *,
    extra_train: tuple[np.ndarray, np.ndarray] | None = None,
    log: Log | None = None,
) -> TrainResult:
    """Train (or fine-tune from `config.base_model_path`) on `split` and save the artifact.

    `report` receives one dict per finished epoch; `should_cancel` is asked after each epoch.
    A cancelled run saves and evaluates nothing: `cancelled=True`, `artifact_path` names where
    the artifact would have gone (no file there), `artifact_sha256` is "" and `evaluation` is {}.
    `extra_train` (images already of the dataset's shape, labels) is appended to the training set
    only: evaluation is on `split.test` alone, and no test or validation sample is trained on.
    """
    hp = config.hyperparameters
    _require_disjoint(split)
    started = time.perf_counter()  # a time budget counts from here
    keras.utils.set_random_seed(hp.seed)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train = _training_arrays(split, extra_train)
    policy = pick_precision(hp, config.mixed_precision)
    model = _prepare_model(config, split, policy)
    plan, timing = _plan(config, model, split, x_train, y_train, started, log)
    plan["precision"] = policy
    schedule = learning_rate_schedule(hp, plan["steps_per_epoch"], plan["epochs"])
    model.compile(
        optimizer=make_optimizer(hp, schedule=schedule), loss=make_loss(hp), metrics=["accuracy"]
    )
    progress = ProgressCallback(plan["epochs"], report, should_cancel, log)
    keeper = None
    if timing is not None and hp.budget_seconds is not None:
        deadline = started + hp.budget_seconds
        keeper = _budget_keeper(
            model, hp, schedule, plan, timing, deadline, _scored_images(config, split), progress
        )
    if log:
        log(
            f"training {model.name} on {len(y_train)} images for up to {plan['epochs']} epochs "
            f"(batch {plan['batch_size']}, {policy}, {hp.optimizer}, {hp.schedule})"
        )
    model.fit(
        **feed.fit_inputs(x_train, y_train, plan["batch_size"], shuffle=True, seed=hp.seed),
        # With a budget the keeper may lengthen the plan up to the most allowed, and stops it.
        epochs=hp.epochs if keeper else plan["epochs"],
        validation_data=feed.validation_data(split.val.x, split.val.y, plan["batch_size"]),
        callbacks=_callbacks(hp, progress, keeper),
        verbose=0,
    )
    if keeper is not None:
        plan["epochs"] = keeper.epochs
        plan["replanned"] = [list(change) for change in keeper.changes]
    artifact_path = output_dir / ARTIFACT_NAME
    result = TrainResult(
        history=progress.rows,
        evaluation={},
        artifact_path=artifact_path,
        artifact_sha256="",
        train_seconds=0.0,
        epochs_run=len(progress.rows),
        cancelled=progress.cancelled,
        framework_versions=framework_versions(),
        recipe=plan,
    )
    if not progress.cancelled:
        if config.flip_safe:
            model = with_mirror_average(model)
            plan["mirror_average"] = True
        _finish(model, split, result, log)
    # Everything a time budget covers: planning, epochs, saving and scoring.
    result.train_seconds = time.perf_counter() - started
    return result


def _finish(model: keras.Model, split: Split, result: TrainResult, log: Log | None) -> None:
    model.save(result.artifact_path)
    result.artifact_sha256 = sha256_of_file(result.artifact_path)
    probs = predict_probabilities(model, split.test.x)
    result.evaluation = scores_from_probabilities(probs, split.test.y, split.test.class_names)
    result.predictions_path = write_holdout_predictions(
        result.artifact_path.parent, split.test_idx, split.test.y, probs
    )
    if log:
        log(
            f"saved {result.artifact_path.name} (sha256 {result.artifact_sha256[:12]}); "
            f"test accuracy {result.evaluation['accuracy']:.4f}"
        )
