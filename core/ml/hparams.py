"""Training hyperparameters: one frozen, validated dataclass and the bounds UIs use for widgets.

Every check lives here, and a refusal names each bad field (`HyperparameterError.field_errors`),
so a form can put each message under its field without parsing the text.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "rmsprop", "sgd")
# "warmup-cosine": linear warm-up to `learning_rate`, then a cosine decay to zero at the last step.
SCHEDULES: tuple[str, ...] = ("warmup-cosine", "constant")
# "auto": mixed float16 on a GPU, mixed bfloat16 on a CPU with native bfloat16 instructions,
# float32 elsewhere; "mixed" asks for the device's mixed policy; "float32" never mixes.
PRECISIONS: tuple[str, ...] = ("auto", "mixed", "float32")

# Inclusive (min, max) per numeric field.
LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (1, 500),
    "batch_size": (0, 4096),
    "learning_rate": (1e-6, 1.0),
    "weight_decay": (0.0, 1.0),
    "label_smoothing": (0.0, 0.5),
    "warmup_fraction": (0.0, 0.5),
    "seed": (0, 2**31 - 1),
    "early_stopping_patience": (0, 100),
    "time_budget_minutes": (0.0, 10080.0),
}
INT_FIELDS: tuple[str, ...] = ("epochs", "batch_size", "seed", "early_stopping_patience")
FLOAT_FIELDS: tuple[str, ...] = (
    "learning_rate", "weight_decay", "label_smoothing", "warmup_fraction", "time_budget_minutes",
)  # fmt: skip
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "precision": PRECISIONS,
}


class HyperparameterError(ValueError):
    """Hyperparameters that are of the wrong type or out of range.

    `field_errors` maps each offending field name (or unknown key) to its message.
    """

    def __init__(self, field_errors: Mapping[str, str]) -> None:
        self.field_errors: dict[str, str] = dict(field_errors)
        super().__init__("; ".join(self.field_errors.values()))


@dataclass(frozen=True)
class Hyperparameters:
    """How a model is trained: a recipe, not only a network.

    Defaults are tuned for the default architecture: AdamW with decoupled weight decay, label
    smoothing, a warm-up then cosine schedule run to its end (no early stopping, which would cut
    the schedule short). `batch_size` 0 picks one for the device and the data
    (`core.ml.recipe.pick_batch_size`); `time_budget_minutes` > 0 fits the number of epochs to
    the budget (`core.ml.recipe`), `epochs` then being the most it may use.
    """

    epochs: int = 30
    batch_size: int = 0
    learning_rate: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 5e-2
    label_smoothing: float = 0.1
    schedule: str = "warmup-cosine"
    warmup_fraction: float = 0.1
    augmentation: bool = True
    seed: int = 0
    early_stopping_patience: int = 0
    time_budget_minutes: float = 0.0
    precision: str = "auto"

    def __post_init__(self) -> None:
        errors: dict[str, str] = {}
        checks = {name: _check_int for name in INT_FIELDS}
        checks |= {name: _check_float for name in FLOAT_FIELDS}
        for name, check in checks.items():
            try:
                # Numpy scalars are accepted but stored as plain Python numbers (JSON-able).
                object.__setattr__(self, name, check(name, getattr(self, name)))
            except ValueError as exc:
                errors[name] = str(exc)
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                errors[name] = f"{name} must be one of {', '.join(allowed)} (got {value!r})"
        if not isinstance(self.augmentation, bool):
            errors["augmentation"] = (
                f"augmentation must be true or false (got {self.augmentation!r})"
            )
        if errors:
            raise HyperparameterError(errors)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Hyperparameters:
        """Build from a mapping; unknown keys are refused by name, missing keys take defaults.

        Every problem is reported at once: unknown keys and bad values of known ones.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        errors = {
            str(key): f"unknown hyperparameter {str(key)!r} (allowed: {', '.join(sorted(known))})"
            for key in d
            if key not in known
        }
        try:
            hp = cls(**{k: v for k, v in d.items() if k in known})
        except HyperparameterError as exc:
            errors.update(exc.field_errors)
        if errors:
            raise HyperparameterError(errors)
        return hp

    @property
    def budget_seconds(self) -> float | None:
        """The time budget in seconds, None when there is none."""
        return self.time_budget_minutes * 60.0 if self.time_budget_minutes > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


def _check_int(name: str, value: object) -> int:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number (got {type(value).__name__} {value!r})")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} (got {value})")
    return int(value)


def _check_float(name: str, value: object) -> float:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number (got {type(value).__name__} {value!r})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {value})")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g} (got {value:g})")
    return float(value)
