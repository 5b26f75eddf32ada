"""Which accelerators this process can use, for whichever Keras backend is active."""

from __future__ import annotations

from db.settings import settings


def detect_gpus() -> list[str]:
    """Names of visible GPUs; `CHANNELHUB_FORCE_CPU=1` hides them (a CPU-only worker)."""
    if settings().force_cpu:
        return []
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver means no usable GPU, not a dead worker
        return []
    return []
