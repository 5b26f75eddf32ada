"""Offline evaluation of a classifier: accuracy, loss, macro/per-class scores, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from sklearn import metrics

from core.ml import feed


def predict_probabilities(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) as float32 for a batch of raw images."""
    if len(x) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), dtype=np.float32)
    probs = feed.predict(model, x.astype(np.float32), batch_size)
    return np.asarray(probs, dtype=np.float32)


def evaluate(
    model: keras.Model, x: np.ndarray, y: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Score `model` on (x, y); every value is a plain Python number or list (JSON-ready)."""
    probs = predict_probabilities(model, x)
    return scores_from_probabilities(probs, np.asarray(y, dtype=np.int64), class_names)


def scores_from_probabilities(
    probs: np.ndarray, y: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """The evaluation dict for given probabilities (N, K) and true labels (N,)."""
    labels = list(range(len(class_names)))
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    eps = 1e-7
    true_probs = probs[np.arange(len(y)), y] if len(y) else np.zeros(0)
    loss = float(-np.mean(np.log(np.clip(true_probs, eps, 1.0)))) if len(y) else 0.0
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y, y_pred, labels=labels, zero_division=0
    )
    per_class = [
        {
            "class": i,
            "name": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]
    return {
        "accuracy": float(metrics.accuracy_score(y, y_pred)) if len(y) else 0.0,
        "loss": loss,
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
        "f1_macro": float(np.mean(f1)),
        "per_class": per_class,
        "confusion_matrix": metrics.confusion_matrix(y, y_pred, labels=labels).tolist(),
        "num_test": int(len(y)),
    }
