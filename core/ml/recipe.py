"""The training recipe around a network: learning-rate schedule, loss with label smoothing,
optimizer with decoupled weight decay, and the batch size and precision that suit the device."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import keras

from core.ml.hparams import Hyperparameters

# Where the batch size is left to the recipe (`batch_size` 0): big enough to keep the device
# busy, small enough that an epoch still has this many steps (small sets need steps, not width).
DEVICE_BATCH = {"gpu": 512, "cpu": 256}
MIN_STEPS_PER_EPOCH = 32
MIN_AUTO_BATCH = 16
# Parameters whose names contain these are not decayed (normalisation scales/shifts, biases).
NO_DECAY = ["gamma", "beta", "bias"]


def pick_batch_size(hp: Hyperparameters, num_train: int, on_gpu: bool) -> int:
    """`hp.batch_size`, or where it is 0 the device's batch, halved until an epoch has at least
    MIN_STEPS_PER_EPOCH steps (never below MIN_AUTO_BATCH)."""
    if hp.batch_size > 0:
        return hp.batch_size
    batch = DEVICE_BATCH["gpu" if on_gpu else "cpu"]
    while batch > MIN_AUTO_BATCH and num_train / batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return batch


def cpu_has_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); False where unknown.

    Without those instructions bfloat16 is emulated and slower than float32."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = set(text.split())
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def pick_precision(hp: Hyperparameters, on_gpu: bool) -> str:
    """The Keras dtype policy for `hp.precision` on this device."""
    if hp.precision == "float32":
        return "float32"
    if on_gpu:
        return "mixed_float16"
    # Asked for explicitly, bfloat16 is used even where the CPU only emulates it.
    if hp.precision == "mixed" or cpu_has_bfloat16():
        return "mixed_bfloat16"
    return "float32"


@keras.saving.register_keras_serializable(package="channelhub")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `peak / warmup_steps` to `peak` over `warmup_steps`, then a cosine
    decay to zero at `total_steps` (zero after it)."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int) -> None:
        self.peak = float(peak)
        self.refit(warmup_steps, total_steps)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32") + 1.0  # the learning rate of the step about to run
        warmup = max(self.warmup_steps, 1)
        rising = self.peak * ops.minimum(step / warmup, 1.0)
        decay_steps = float(self.total_steps - self.warmup_steps)
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        falling = 0.5 * self.peak * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step <= self.warmup_steps, rising, falling)

    def refit(self, warmup_steps: int, total_steps: int) -> None:
        """Change the schedule's length (a time budget re-fitting a running schedule); the
        caller must trace the step function again for it to take effect."""
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def learning_rate_schedule(
    hp: Hyperparameters, steps_per_epoch: int, epochs: int
) -> float | WarmupCosine:
    """The learning rate (a schedule) for `epochs` epochs of `steps_per_epoch` steps."""
    if hp.schedule == "constant":
        return hp.learning_rate
    return WarmupCosine(hp.learning_rate, *schedule_steps(hp, steps_per_epoch, epochs))


def schedule_steps(hp: Hyperparameters, steps_per_epoch: int, epochs: int) -> tuple[int, int]:
    """The warm-up and total steps of `hp`'s schedule over `epochs` epochs."""
    total = steps_per_epoch * epochs
    return round(hp.warmup_fraction * total), total


def make_optimizer(
    hp: Hyperparameters,
    steps_per_epoch: int = 1,
    epochs: int = 1,
    *,
    schedule: float | WarmupCosine | None = None,
) -> keras.optimizers.Optimizer:
    """The optimizer named in `hp`, on `schedule` (by default `hp`'s schedule for `epochs`
    epochs of `steps_per_epoch` steps), with decoupled weight decay (not applied to
    normalisation parameters and biases)."""
    lr = schedule if schedule is not None else learning_rate_schedule(hp, steps_per_epoch, epochs)
    wd = hp.weight_decay or None
    factories: dict[str, Callable[[], keras.optimizers.Optimizer]] = {
        "adam": lambda: keras.optimizers.Adam(lr, weight_decay=wd),
        "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=hp.weight_decay),
        "rmsprop": lambda: keras.optimizers.RMSprop(lr, weight_decay=wd),
        "sgd": lambda: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=wd),
    }
    optimizer = factories[hp.optimizer]()
    if hp.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


@keras.saving.register_keras_serializable(package="channelhub")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of class probabilities against integer labels smoothed by `smoothing`:
    the target puts 1 - smoothing on the label and spreads smoothing evenly over all classes."""

    def __init__(self, smoothing: float = 0.0, name: str = "smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        ops = keras.ops
        log_p = ops.log(ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0))
        labels = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
        nll = -ops.squeeze(ops.take_along_axis(log_p, labels, axis=-1), axis=-1)
        return (1.0 - self.smoothing) * nll - self.smoothing * ops.mean(log_p, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing}


def make_loss(hp: Hyperparameters) -> keras.losses.Loss | str:
    """Plain sparse cross-entropy, or its label-smoothed form where `hp` asks for smoothing."""
    if hp.label_smoothing == 0:
        return "sparse_categorical_crossentropy"
    return SmoothedSparseCrossentropy(hp.label_smoothing)
