"""Tests for core.ml.holdout_predictions: the one writer and reader of the test-predictions file."""

from pathlib import Path

import numpy as np
import pytest

from core.ml.holdout_predictions import (
    PREDICTIONS_NAME,
    PredictionsFileError,
    read_holdout_predictions,
    write_holdout_predictions,
)


def _probs(classes: list[int], k: int = 3) -> np.ndarray:
    probs = np.full((len(classes), k), 0.1, dtype=np.float32)
    probs[np.arange(len(classes)), classes] = 0.8
    return probs


def test_round_trip(tmp_path: Path) -> None:
    path = write_holdout_predictions(tmp_path, np.array([4, 7, 9]), np.array([0, 1, 2]),
                                     _probs([0, 2, 2]))  # fmt: skip
    assert path == tmp_path / PREDICTIONS_NAME
    read = read_holdout_predictions(path)
    assert read.indices.tolist() == [4, 7, 9] and read.y_true.tolist() == [0, 1, 2]
    assert read.y_pred.tolist() == [0, 2, 2]
    assert read.probs.dtype == np.float32 and read.probs.shape == (3, 3)


def test_right_where_other_wrong_matches_samples_by_dataset_index(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    # a: right on 10 and 11, wrong on 12; b (other order, one sample a lacks): right only on 12.
    a = read_holdout_predictions(
        write_holdout_predictions(
            a_dir, np.array([10, 11, 12]), np.array([0, 1, 2]), _probs([0, 1, 0])
        )  # fmt: skip
    )
    b = read_holdout_predictions(
        write_holdout_predictions(
            b_dir, np.array([12, 11, 10, 13]), np.array([2, 1, 0, 1]), _probs([2, 0, 0, 1])
        )  # fmt: skip
    )
    assert a.right_where_other_wrong(b) == [(11, 1, 1, 0)]
    assert b.right_where_other_wrong(a) == [(12, 2, 2, 0)]
    assert a.right_where_other_wrong(a) == []


def test_missing_broken_and_foreign_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(PredictionsFileError, match="not found"):
        read_holdout_predictions(tmp_path / "nope.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(PredictionsFileError, match="cannot read broken.npz"):
        read_holdout_predictions(broken)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, indices=np.arange(3), y_true=np.zeros(3))
    with pytest.raises(PredictionsFileError, match="lacks y_pred, probs"):
        read_holdout_predictions(foreign)
    uneven = tmp_path / "uneven.npz"
    np.savez(uneven, indices=np.arange(3), y_true=np.zeros(3), y_pred=np.zeros(2),
             probs=np.zeros((3, 2)))  # fmt: skip
    with pytest.raises(PredictionsFileError, match="different lengths"):
        read_holdout_predictions(uneven)
