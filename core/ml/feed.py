"""How numpy images reach `fit`, `evaluate` and `predict`: in batches, without stalls.

On the TensorFlow backend Keras slices numpy arrays through an autotuned `tf.data` pipeline and
builds a new one each epoch. In TensorFlow 2.21 tearing one down can wait for the autotuner's
thread to wake from its sleep, which grows to a minute: on CIFAR-10 about half the 40-second
epochs then stood still for another 30 to 40 seconds with both cores idle. The pipeline here
slices the same way with autotuning off. Other backends read the arrays without `tf.data`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

# Batches made ahead of the step that needs them (a fixed buffer: no autotuning).
PREFETCH = 2


def _uses_tf_data() -> bool:
    return keras.backend.backend() == "tensorflow"


def _dataset(x: np.ndarray, y: np.ndarray | None, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    order = tf.data.Dataset.range(len(x))
    if shuffle:
        order = order.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    arrays = (x,) if y is None else (x, y)
    # One copy of the arrays, indexed a batch at a time (as Keras does), not one op per image.
    whole = tf.data.Dataset.from_tensors(arrays).repeat()
    batches = tf.data.Dataset.zip((order.batch(batch_size), whole)).map(
        lambda rows, data: tuple(tf.gather(part, rows) for part in data)
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(PREFETCH).with_options(options)


def fit_inputs(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0
) -> dict[str, Any]:
    """Keyword arguments for `model.fit` reading (x, y) in batches, reshuffled each epoch when
    `shuffle` (in an order `seed` fixes)."""
    if not _uses_tf_data() or len(x) == 0:
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": shuffle}
    # The dataset shuffles itself; fit's own shuffle would only warn that it is ignored.
    return {"x": _dataset(x, y, batch_size, shuffle, seed), "shuffle": False}


def validation_data(x: np.ndarray, y: np.ndarray, batch_size: int) -> Any:
    """`validation_data` for `model.fit`: (x, y) in batches of `batch_size`."""
    if not _uses_tf_data() or len(x) == 0:
        return (x, y)
    return _dataset(x, y, batch_size, False, 0)


def predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """`model.predict` over `x` in batches of `batch_size`."""
    if not _uses_tf_data() or len(x) == 0:
        return model.predict(x, batch_size=batch_size, verbose=0)
    return model.predict(_dataset(x, None, batch_size, False, 0), verbose=0)
