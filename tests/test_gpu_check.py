"""bench/gpu_check.py on the CPU (its JSON, not a speed threshold), and the compiled JAX
inference path where JAX is installed (it is not in the requirements)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"device", "backend", "mixed_precision", "images_per_s", "bare_keras_images_per_s",
        "ratio", "epochs", "batch_size", "train_images"}  # fmt: skip


@pytest.mark.slow
def test_gpu_check_runs_a_worker_job_on_the_cpu_and_prints_its_ratio(tmp_path):
    env = dict(os.environ, CHANNELHUB_FORCE_CPU="1", CHANNELHUB_HOME=str(tmp_path / "unused"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--images", "1200",
         "--epochs", "2", "--batch-size", "64"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["device"] == "cpu" and result["mixed_precision"] is False
    assert result["train_images"] > 0 and result["epochs"] == 2
    for key in ("images_per_s", "bare_keras_images_per_s", "ratio"):
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0
    assert not (tmp_path / "unused").exists(), "the check used the caller's registry"


def test_gpu_check_refuses_a_run_with_nothing_to_time():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--epochs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--epochs must be at least 2" in done.stderr
    assert "Traceback" not in done.stderr


JAX_PREDICTOR = textwrap.dedent(
    """
    import sys, threading
    import keras, numpy as np
    from core.ml.inference import Predictor
    assert keras.backend.backend() == "jax"
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.save(sys.argv[1])
    predictor = Predictor(sys.argv[1], warmup_sizes=(1, 4))
    assert predictor._compiled, "the JAX path is compiled"
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1)).astype(np.uint8)
    expected = model.predict(images.astype("float32"), verbose=0)
    assert np.allclose(predictor.predict_batch(images), expected, atol=1e-5)
    results = [None] * 8
    def run(i):
        results[i] = predictor.predict_batch(images[i % 5 : i % 5 + 1])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    [t.start() for t in threads]; [t.join() for t in threads]
    for i, got in enumerate(results):
        assert np.allclose(got, expected[i % 5 : i % 5 + 1], atol=1e-5)
    print("ok")
    """
)


@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="jax is not installed (not in the requirements); the JAX inference path is not run",
)
def test_jax_inference_is_compiled_and_matches_predict(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", JAX_PREDICTOR, str(tmp_path / "tiny.keras")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
