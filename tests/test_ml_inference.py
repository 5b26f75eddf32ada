"""Tests for core.ml.inference: Predictor probabilities, padding buckets, threads, bad shapes."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest

from core.ml.architectures import build_model
from core.ml.inference import Predictor, load_model


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(0)
    model = build_model("seed-cnn", (8, 8, 1), 5, augmentation=True)
    path = tmp_path_factory.mktemp("inference") / "model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def predictor(artifact: Path) -> Predictor:
    return Predictor(artifact, warmup_sizes=(1, 8))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)


def test_shape_and_classes(predictor: Predictor) -> None:
    assert predictor.input_shape == (8, 8, 1)
    assert predictor.num_classes == 5


@pytest.mark.parametrize("n", [1, 3, 8, 70])
def test_probabilities_match_model(predictor: Predictor, artifact: Path, n: int) -> None:
    x = _images(n, seed=n)
    probs = predictor.predict_batch(x)
    assert probs.shape == (n, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    expected = keras.ops.convert_to_numpy(load_model(artifact)(x.astype("float32"), training=False))
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)


def test_padding_does_not_change_results(predictor: Predictor) -> None:
    x = _images(5, seed=9)
    alone = np.stack([predictor.predict_one(img) for img in x])
    np.testing.assert_allclose(predictor.predict_batch(x), alone, rtol=1e-5, atol=1e-7)


def test_concurrent_calls_agree(predictor: Predictor) -> None:
    batches = [_images(1 + i % 6, seed=i) for i in range(24)]
    expected = [predictor.predict_batch(b) for b in batches]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(predictor.predict_batch, batches))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)


def test_wrong_shape_refused(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 8, 8, 1\)"):
        predictor.predict_batch(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    assert predictor.predict_batch(np.zeros((0, 8, 8, 1), dtype=np.uint8)).shape == (0, 5)
