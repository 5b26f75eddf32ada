"""The file of test-split predictions that training writes beside each artifact, and its reader.

Training writes it once (`write_holdout_predictions`); everything that compares versions sample
by sample reads it through `read_holdout_predictions`, so its keys are known in this module only.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREDICTIONS_NAME = "test_predictions.npz"
_KEYS = ("indices", "y_true", "y_pred", "probs")


class PredictionsFileError(ValueError):
    """The predictions file is missing, unreadable, or not the shape training writes."""


@dataclass(frozen=True)
class HoldoutPredictions:
    """One version's predictions on its dataset's test split.

    `indices` are sample positions in the whole dataset, so two versions trained on the same
    dataset can be matched sample by sample.
    """

    indices: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray

    def right_where_other_wrong(self, other: HoldoutPredictions) -> list[tuple[int, int, int, int]]:
        """(sample index, true class, this class, other's class): this right, other wrong."""
        common, mine, theirs = np.intersect1d(self.indices, other.indices, return_indices=True)
        y, ours, their = self.y_true[mine], self.y_pred[mine], other.y_pred[theirs]
        hit = (ours == y) & (their != y)
        return [
            (int(i), int(t), int(p), int(q))
            for i, t, p, q in zip(common[hit], y[hit], ours[hit], their[hit], strict=True)
        ]


def write_holdout_predictions(
    directory: Path, indices: np.ndarray, y_true: np.ndarray, probs: np.ndarray
) -> Path:
    """Save predictions (probabilities (N, K)) as `directory/PREDICTIONS_NAME`; returns the path."""
    path = Path(directory) / PREDICTIONS_NAME
    probs = np.asarray(probs)
    np.savez_compressed(
        path,
        indices=np.asarray(indices, dtype=np.int64),
        y_true=np.asarray(y_true, dtype=np.int64),
        y_pred=probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64),
        probs=probs.astype(np.float16),  # half precision: ranking and display need no more
    )
    return path


def read_holdout_predictions(path: Path) -> HoldoutPredictions:
    """Read a file `write_holdout_predictions` wrote; PredictionsFileError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsFileError(f"predictions file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in _KEYS if key not in archive.files]
            if missing:
                raise PredictionsFileError(f"{path.name} lacks {', '.join(missing)}")
            arrays = {key: archive[key] for key in _KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, PredictionsFileError):
            raise
        raise PredictionsFileError(f"cannot read {path.name}: {exc}") from exc
    lengths = {len(arrays[key]) for key in _KEYS}
    if len(lengths) != 1:
        raise PredictionsFileError(f"{path.name} holds arrays of different lengths")
    return HoldoutPredictions(
        arrays["indices"], arrays["y_true"], arrays["y_pred"], arrays["probs"].astype(np.float32)
    )
