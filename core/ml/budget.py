"""Fit a training schedule to a time budget: time a few real steps, then choose the number of
epochs so the whole schedule (warm-up to its last step), validation, saving and scoring end
within the budget, rather than stopping a schedule halfway."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from core.ml import feed

# Steps timed, after one untimed step (the step function is traced before them).
CALIBRATION_STEPS = 10
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


class _StepClock(keras.callbacks.Callback):
    """The time at which each training step ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.ends.append(time.perf_counter())


def time_training_steps(
    model: keras.Model, loss, x: np.ndarray, y: np.ndarray, batch: int
) -> StepTiming:
    """Time real training steps of `model` on the first images of `x`, leaving its weights as
    they were (a zero learning rate; weights and statistics restored afterwards).

    The first `fit` traces the training and validation functions as the real run will (the
    real run traces them again: its optimizer differs); the second times steps alone, from the
    end of its first step to the end of its last, so neither `fit`'s own set-up nor a first
    step's warm-up is counted as training (a whole short `fit` reads far slower than the epochs
    then run). The model is compiled here for the measurement: compile it again before training.
    """
    weights = model.get_weights()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, metrics=["accuracy"])
    one = min(batch, len(y))
    started = time.perf_counter()
    model.fit(
        **feed.fit_inputs(x[:one], y[:one], batch, shuffle=True), epochs=1, verbose=0,
        validation_data=feed.validation_data(x[:one], y[:one], batch),
    )  # fmt: skip
    first = time.perf_counter() - started
    full_steps = max(min(CALIBRATION_STEPS + 1, len(y) // batch), 1)
    n = full_steps * batch if len(y) >= batch else len(y)
    clock = _StepClock()
    started = time.perf_counter()
    model.fit(
        **feed.fit_inputs(x[:n], y[:n], batch, shuffle=False), epochs=1, verbose=0,
        callbacks=[clock],
    )  # fmt: skip
    if len(clock.ends) >= 2:
        step = (clock.ends[-1] - clock.ends[0]) / (len(clock.ends) - 1)
    else:  # one step of data: the whole fit is all there is to time
        step = time.perf_counter() - started
    model.set_weights(weights)
    # Per full batch: a short last batch costs less than a full one.
    step_s = step * batch / min(batch, n)
    return StepTiming(
        step_s=step_s, trace_s=max(first - step_s * (1 + FORWARD_SHARE), 0.0), batch=batch
    )


def tail_seconds(timing: StepTiming, num_test: int) -> float:
    """What follows the last epoch: tracing prediction, scoring `num_test` images, saving."""
    return FORWARD_SHARE * (timing.trace_s + num_test * timing.step_s / timing.batch) + 1.0


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
    # Training and validation are traced again; then saving and scoring.
    fixed_s = timing.trace_s + tail_seconds(timing, num_test)
    usable = remaining_s * BUDGET_SAFETY - fixed_s
    return int(min(max(usable // epoch_s, 1), max_epochs))


class BudgetKeeper(keras.callbacks.Callback):
    """Keeps a running schedule inside its time budget, from the epochs' measured times.

    The plan made before training rests on a few timed steps; epochs on a shared machine run
    faster or slower than that. After each epoch this re-counts the epochs that fit before
    `deadline` (less `tail_s` for saving and scoring) at the pace of the last epochs that
    traced nothing: where the plan would overrun it is shortened; where at least two more
    epochs would fit it is lengthened by one less than fit (room for noise), but only once
    such an epoch has been timed. `refit(epochs)` is then called, which changes the schedule's
    length (so it still decays to its end) and makes the next epoch trace the step function
    again: a new plan leaves room for what that costs (`trace_s` until an epoch after a refit
    has shown it). Training stops when the plan's last epoch is done.
    """

    def __init__(
        self,
        *,
        deadline: float,
        tail_s: float,
        epochs: int,
        max_epochs: int,
        refit: Callable[[int], None],
        trace_s: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.deadline = deadline
        self.tail_s = tail_s
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.refit = refit
        self.retrace_s = trace_s
        self.clock = clock
        # The first epoch's pace: its seconds less the tracing of training and validation.
        self.first_s: float | None = None
        self._first_tracing = trace_s * (1.0 + FORWARD_SHARE)
        self.clean: list[float] = []  # the seconds of the epochs that traced nothing
        self.changes: list[tuple[int, int]] = []  # (after epoch, new number of epochs)
        self._began = 0.0
        self._retracing = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._began = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = self.clock()
        took = now - self._began
        if self.first_s is None:
            self.first_s = max(took - self._first_tracing, took / 2)
        elif self._retracing:
            self.retrace_s = max(took - self.pace(), 0.0)
        else:
            self.clean.append(took)
        self._retracing = False
        done = epoch + 1
        wanted = self.replan(done, now)
        if wanted != self.epochs:
            self.epochs = wanted
            self.changes.append((done, wanted))
            self.refit(wanted)
            self._retracing = True
        if done >= self.epochs:
            self.model.stop_training = True

    def pace(self) -> float:
        """Seconds an epoch: the last clean epochs', or until there is one the first's."""
        recent = self.clean[-3:] or [self.first_s or 0.0]
        return sum(recent) / len(recent)

    def replan(self, done: int, now: float) -> int:
        """The number of epochs the schedule should have after `done` epochs at time `now`."""
        left = self.deadline - now - self.tail_s
        pace = max(self.pace(), 1e-9)
        fits = done + int(max(left, 0.0) // pace)
        # A new plan costs a retrace in the next epoch: a plan is only changed to one that
        # leaves room for it (so the retrace itself does not call for another change).
        refitted = min(done + int(max(left - self.retrace_s, 0.0) // pace), self.max_epochs)
        if fits < self.epochs:
            return max(refitted, done)
        if refitted >= self.epochs + 2 and self.clean:
            return refitted - 1
        return self.epochs
