"""The batches training and scoring read: every sample once an epoch, no autotuned tf.data."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.ml import feed

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="other backends read numpy arrays directly"
)


def _epoch_labels(dataset) -> np.ndarray:
    return np.concatenate([batch[1].numpy() for batch in dataset])


def test_each_epoch_reads_every_sample_once_in_a_new_order() -> None:
    x = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
    y = np.arange(50)
    dataset = feed.fit_inputs(x, y, 8, shuffle=True, seed=3)["x"]
    first, second = _epoch_labels(dataset), _epoch_labels(dataset)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert list(first) != list(second)
    for batch_x, batch_y in dataset:  # images stay with their labels
        assert batch_x.numpy().ravel().tolist() == batch_y.numpy().tolist()
    # The same seed gives the same orders.
    again = feed.fit_inputs(x, y, 8, shuffle=True, seed=3)["x"]
    assert list(_epoch_labels(again)) == list(first)


def test_unshuffled_batches_keep_the_order_and_the_short_last_batch() -> None:
    x = np.zeros((10, 2, 2, 1), np.uint8)
    sizes = [len(b[1]) for b in feed.validation_data(x, np.arange(10), 4)]
    assert sizes == [4, 4, 2]
    assert list(_epoch_labels(feed.validation_data(x, np.arange(10), 4))) == list(range(10))


def test_the_pipeline_is_not_autotuned() -> None:
    # Autotuning is what stalls an epoch's end for up to a minute (see core.ml.feed).
    x = np.zeros((4, 2, 2, 1), np.uint8)
    for dataset in (
        feed.fit_inputs(x, np.arange(4), 2, shuffle=True)["x"],
        feed.validation_data(x, np.arange(4), 2),
    ):
        assert dataset.options().autotune.enabled is False


def test_predict_answers_for_every_image_in_order() -> None:
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_allclose(feed.predict(model, x, 3), model(x).numpy(), rtol=1e-5)
