"""Tests for core.ml.hparams: defaults, range checks with readable messages, dict round trip."""

import numpy as np
import pytest

from core.ml.hparams import LIMITS, HyperparameterError, Hyperparameters


def test_defaults_round_trip() -> None:
    hp = Hyperparameters()
    assert Hyperparameters.from_dict(hp.to_dict()) == hp
    assert hp.to_dict()["optimizer"] == "adamw"
    assert hp.schedule == "warmup-cosine" and hp.budget_seconds is None
    assert Hyperparameters(time_budget_minutes=2).budget_seconds == 120.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 100_000, "epochs must be between 1 and 500 (got 100000)"),
        ("epochs", 0, "epochs must be between 1 and 500 (got 0)"),
        ("batch_size", 10_000, "batch_size must be between 0 and 4096 (got 10000)"),
        ("batch_size", -1, "batch_size must be between 0 and 4096 (got -1)"),
        ("label_smoothing", 0.6, "label_smoothing must be between 0 and 0.5 (got 0.6)"),
        ("warmup_fraction", -0.1, "warmup_fraction must be between 0 and 0.5"),
        ("weight_decay", 2.0, "weight_decay must be between 0 and 1 (got 2)"),
        ("time_budget_minutes", -1, "time_budget_minutes must be between 0 and 10080 (got -1)"),
        ("learning_rate", 10.0, "learning_rate must be between 1e-06 and 1 (got 10)"),
        ("learning_rate", 0.0, "learning_rate must be between 1e-06 and 1 (got 0)"),
        ("seed", -5, "seed must be between 0 and 2147483647 (got -5)"),
        ("seed", 2**31, "seed must be between 0 and 2147483647 (got 2147483648)"),
        ("early_stopping_patience", 101, "early_stopping_patience must be between 0 and 100"),
    ],
)
def test_out_of_range_refused_with_range(field: str, value: object, message: str) -> None:
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters(**{field: value})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", True, "whole number"),
        ("batch_size", 64.0, "whole number"),
        ("batch_size", "64", "whole number"),
        ("learning_rate", float("nan"), "finite"),
        ("learning_rate", float("inf"), "finite"),
        ("learning_rate", False, "must be a number"),
        ("learning_rate", "0.01", "must be a number"),
        ("optimizer", "adagrad", "adam, adamw, rmsprop, sgd"),
        ("optimizer", None, "optimizer must be one of"),
        ("augmentation", 1, "true or false"),
        ("schedule", "step", "schedule must be one of warmup-cosine, constant"),
        ("precision", "fp8", "precision must be one of auto, mixed, float32"),
        ("time_budget_minutes", "5", "must be a number"),
    ],
)
def test_wrong_types_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(HyperparameterError, match=message):
        Hyperparameters(**{field: value})


def test_patience_zero_allowed_and_numpy_numbers_coerced() -> None:
    hp = Hyperparameters(
        early_stopping_patience=0, epochs=np.int64(3), learning_rate=np.float32(0.5)
    )
    assert hp.early_stopping_patience == 0
    assert type(hp.epochs) is int and type(hp.learning_rate) is float


def test_from_dict_refuses_unknown_keys_by_name() -> None:
    with pytest.raises(HyperparameterError, match="unknown hyperparameter.*epoch\\b"):
        Hyperparameters.from_dict({"epoch": 3, "seed": 1})


def test_limits_match_validation() -> None:
    for field, (low, high) in LIMITS.items():
        Hyperparameters(**{field: type(getattr(Hyperparameters(), field))(low)})
        Hyperparameters(**{field: type(getattr(Hyperparameters(), field))(high)})


def test_every_bad_field_is_named_in_field_errors() -> None:
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters.from_dict(
            {"epochs": 0, "learning_rate": "fast", "optimizer": "magic", "dropout": 0.5}
        )
    errors = info.value.field_errors
    assert set(errors) == {"epochs", "learning_rate", "optimizer", "dropout"}
    assert errors["epochs"].startswith("epochs must be between 1 and 500")
    assert "must be a number" in errors["learning_rate"]
    assert "unknown hyperparameter 'dropout'" in errors["dropout"]
    assert all(message in str(info.value) for message in errors.values())


def test_a_single_bad_field_names_only_that_field() -> None:
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters(batch_size=-1)
    assert list(info.value.field_errors) == ["batch_size"]
