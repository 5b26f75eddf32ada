"""Fit a training schedule to a time budget: time a few real steps, then choose the number of
epochs so the whole schedule (warm-up to its last step), validation, saving and scoring end
within the budget, rather than stopping a schedule halfway."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras
import numpy as np

# Steps timed after the first (which includes tracing the step function).
CALIBRATION_STEPS = 4
# Aim below the budget: throughput drifts on a shared machine.
BUDGET_SAFETY = 0.92
# A forward pass costs about a third of a training step for the same images.
FORWARD_SHARE = 1.0 / 3.0


@dataclass(frozen=True)
class StepTiming:
    """Seconds of one training step of `batch` images, and the one-off cost of tracing it."""

    step_s: float
    trace_s: float
    batch: int

    @property
    def images_per_s(self) -> float:
        return self.batch / self.step_s


def time_training_steps(
    model: keras.Model, loss, x: np.ndarray, y: np.ndarray, batch: int
) -> StepTiming:
    """Time real training steps of `model` on the first images of `x`, leaving its weights as
    they were (a zero learning rate; weights and statistics restored afterwards).

    The first `fit` traces the training and validation functions as the real run will (the
    real run traces them again: its optimizer differs); the second times steps alone. The
    model is compiled here for the measurement: compile it again before training."""
    weights = model.get_weights()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, metrics=["accuracy"])
    one = min(batch, len(y))
    started = time.perf_counter()
    model.fit(
        x[:one], y[:one], batch_size=batch, epochs=1, validation_data=(x[:one], y[:one]),
        verbose=0,
    )  # fmt: skip
    first = time.perf_counter() - started
    n = min(batch * CALIBRATION_STEPS, len(y))
    started = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    step = (time.perf_counter() - started) / math.ceil(n / batch)
    model.set_weights(weights)
    # Per full batch: a short last batch costs less than a full one.
    step_s = step * batch / min(batch, n)
    return StepTiming(
        step_s=step_s, trace_s=max(first - step_s * (1 + FORWARD_SHARE), 0.0), batch=batch
    )


def epochs_for_budget(
    remaining_s: float,
    timing: StepTiming,
    *,
    num_train: int,
    num_val: int,
    num_test: int,
    max_epochs: int,
) -> int:
    """The most epochs (at least 1, at most `max_epochs`) whose training, validation, saving and
    final scoring fit in `remaining_s` at `timing`'s speed."""
    per_image = timing.step_s / timing.batch
    epoch_s = (
        math.ceil(num_train / timing.batch) * timing.step_s + num_val * per_image * FORWARD_SHARE
    )
    # Training and validation are traced again (a third more for prediction); saving is small.
    fixed_s = (1.0 + FORWARD_SHARE) * timing.trace_s + num_test * per_image * FORWARD_SHARE + 1.0
    usable = remaining_s * BUDGET_SAFETY - fixed_s
    return int(min(max(usable // epoch_s, 1), max_epochs))
