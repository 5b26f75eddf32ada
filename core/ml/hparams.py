"""Training hyperparameters: one frozen, validated dataclass and the bounds UIs use for widgets."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "rmsprop", "sgd")

# Inclusive (min, max) per numeric field.
LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (1, 500),
    "batch_size": (1, 4096),
    "learning_rate": (1e-6, 1.0),
    "seed": (0, 2**31 - 1),
    "early_stopping_patience": (0, 100),
}


class HyperparameterError(ValueError):
    """A hyperparameter is of the wrong type or outside its allowed range."""


@dataclass(frozen=True)
class Hyperparameters:
    """How a model is trained.

    Defaults are tuned for `resnet-small`: 15 epochs reach about 0.99 test accuracy on `digits`
    in about a minute on two CPU cores.
    """

    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    augmentation: bool = True
    seed: int = 0
    early_stopping_patience: int = 5

    def __post_init__(self) -> None:
        # Numpy scalars are accepted but stored as plain Python numbers so to_dict stays JSON-able.
        for name in ("epochs", "batch_size", "seed", "early_stopping_patience"):
            object.__setattr__(self, name, _check_int(name, getattr(self, name)))
        object.__setattr__(self, "learning_rate", _check_float("learning_rate", self.learning_rate))
        if not isinstance(self.optimizer, str) or self.optimizer not in OPTIMIZERS:
            raise HyperparameterError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})"
            )
        if not isinstance(self.augmentation, bool):
            raise HyperparameterError(
                f"augmentation must be true or false (got {self.augmentation!r})"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Hyperparameters:
        """Build from a mapping; unknown keys are refused by name, missing keys take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise HyperparameterError(
                f"unknown hyperparameter(s): {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(known))})"
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


def _check_int(name: str, value: object) -> int:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise HyperparameterError(
            f"{name} must be a whole number (got {type(value).__name__} {value!r})"
        )
    if not low <= value <= high:
        raise HyperparameterError(f"{name} must be between {low} and {high} (got {value})")
    return int(value)


def _check_float(name: str, value: object) -> float:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HyperparameterError(f"{name} must be a number (got {type(value).__name__} {value!r})")
    if not math.isfinite(value):
        raise HyperparameterError(f"{name} must be a finite number (got {value})")
    if not low <= value <= high:
        raise HyperparameterError(f"{name} must be between {low:g} and {high:g} (got {value:g})")
    return float(value)
