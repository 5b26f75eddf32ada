"""Serving fast path: load a saved model once and predict class probabilities for raw images."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from core.ml import mirror  # noqa: F401 - registers the layer mirror-averaged artifacts use

# Batches are padded up to one of these sizes so the compiled call is traced a few times only.
BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` artifact for inference (no optimizer state is needed)."""
    return keras.saving.load_model(Path(path), compile=False)


def _bucket(n: int) -> int:
    return next(size for size in BUCKETS if size >= n)


def _compiled_call(model: keras.Model) -> tuple[Callable[[np.ndarray], object], bool]:
    """The model's inference call, compiled where the backend allows; and whether it is."""
    if keras.backend.backend() == "tensorflow":
        return _tf_call(model), True
    if keras.backend.backend() == "jax":
        return _jax_call(model), True
    return lambda x: model(x, training=False), False


def _tf_call(model: keras.Model) -> Callable[[np.ndarray], object]:
    """The model under `tf.function`, one concrete function per batch size, called directly:
    the polymorphic function's dispatch cost a lone request a quarter to half a millisecond."""
    import tensorflow as tf  # serving-only fast path; model and training code stay neutral

    @tf.function(jit_compile=False, reduce_retracing=True)
    def call(x: object) -> object:
        return model(x, training=False)

    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    concrete: dict[int, Callable] = {}

    def run(x: np.ndarray) -> object:
        size = len(x)
        if size not in concrete:
            spec = tf.TensorSpec((size, *shape), tf.float32)
            concrete[size] = call.get_concrete_function(spec)
        return concrete[size](tf.convert_to_tensor(x, dtype=tf.float32))

    return run


def _jax_call(model: keras.Model) -> Callable[[np.ndarray], object]:
    """The model's stateless call under `jax.jit`, its weights passed in as arguments (a jitted
    closure would bake them in as constants): one compiled program per batch bucket, safe to
    run from many threads once traced."""
    import jax  # serving-only fast path, as tf.function is above

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def call(trainable: list, non_trainable: list, x: object) -> object:
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return outputs

    return lambda x: call(trainable, non_trainable, x)


class Predictor:
    """Thread-safe probabilities for batches of raw uint8 images of the model's input shape."""

    def __init__(self, path: str | Path, *, warmup_sizes: Sequence[int] = BUCKETS) -> None:
        self.path = Path(path)
        self.model = load_model(self.path)
        self.input_shape: tuple[int, int, int] = tuple(  # type: ignore[assignment]
            int(d) for d in self.model.inputs[0].shape[1:]
        )
        self.num_classes = int(self.model.outputs[0].shape[-1])
        self._call, self._compiled = _compiled_call(self.model)
        self._lock = threading.Lock()
        self._traced: set[int] = set()
        for size in warmup_sizes:
            self._run_bucket(np.zeros((_bucket(size), *self.input_shape), dtype=np.float32))

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N, K) float32 for images (N, H, W, C) with values 0..255."""
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected images of shape (N, {', '.join(map(str, self.input_shape))}) "
                f"(got {x.shape})"
            )
        if len(x) == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        largest = BUCKETS[-1]
        chunks = [self._predict_chunk(x[i : i + largest]) for i in range(0, len(x), largest)]
        return np.concatenate(chunks)

    def predict_one(self, img: np.ndarray) -> np.ndarray:
        """Probabilities (K,) for one image (H, W, C)."""
        return self.predict_batch(np.asarray(img)[None])[0]

    def _predict_chunk(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if _bucket(n) == n:
            return self._run_bucket(x.astype(np.float32))
        padded = np.zeros((_bucket(n), *self.input_shape), dtype=np.float32)
        padded[:n] = x
        return self._run_bucket(padded)[:n]

    def _run_bucket(self, padded: np.ndarray) -> np.ndarray:
        size = len(padded)
        # Tracing (first call per size) and eager calls are serialised; a traced
        # concrete function can then run concurrently from many threads.
        if self._compiled and size in self._traced:
            out = self._call(padded)
        else:
            with self._lock:
                out = self._call(padded)
                self._traced.add(size)
        return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)
