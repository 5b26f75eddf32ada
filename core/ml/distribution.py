"""Data-parallel training over several devices of one machine, for whichever Keras backend is
active: `tf.distribute.MirroredStrategy` under TensorFlow, `keras.distribution.DataParallel`
under JAX. The only place in `core.ml` that names a backend's distribution API."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import keras


class DistributionError(RuntimeError):
    """Several devices were asked for where the backend cannot replicate across them."""


def local_devices(kind: str) -> list[str]:
    """Names of this process's logical `kind` ("gpu" or "cpu") devices, as the active backend
    spells them (what `strategy_scope` takes)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices(kind.upper())]
    if backend == "jax":
        return list(keras.distribution.list_devices(kind))
    return []


def replicates_any_batch() -> bool:
    """Whether a last, smaller batch can be split over the replicas. JAX's DataParallel needs
    every batch (training, validation, the test predictions) to divide evenly by the device
    count, so the worker trains on one device there until the data are padded for it."""
    return keras.backend.backend() == "tensorflow"


def strategy_name() -> str:
    """How the active backend replicates a model: shown in the version's device label."""
    return "mirrored" if keras.backend.backend() == "tensorflow" else "data-parallel"


def device_label(kind: str, count: int, name: str = "") -> str:
    """'cpu', 'gpu (NAME)', or for several devices '2 × GPU (mirrored): NAME'."""
    if count < 2:
        return f"{kind} ({name})" if name else kind
    return f"{count} × {kind.upper()} ({strategy_name()})" + (f": {name}" if name else "")


@contextmanager
def strategy_scope(devices: Sequence[str] | None) -> Iterator[int]:
    """Build, compile and fit a model inside this scope to train one replica per device, each
    on its share of every batch (the batch size stays the global one). Fewer than two devices:
    nothing changes. Yields the number of replicas."""
    devices = list(devices or [])
    if len(devices) < 2:
        yield 1
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=devices)
        with strategy.scope():
            yield int(strategy.num_replicas_in_sync)
    elif backend == "jax":
        distribution = keras.distribution.DataParallel(devices=devices)
        with distribution.scope():
            yield len(devices)
    else:
        raise DistributionError(
            f"training on {len(devices)} devices needs the tensorflow or jax backend "
            f"(KERAS_BACKEND is {backend!r})"
        )
