"""Which accelerators this process can use, for whichever Keras backend is active; and pinning
a worker to some GPUs (or splitting its CPU) before the backend starts."""

from __future__ import annotations

import os
import sys

from db.settings import settings


class DeviceError(ValueError):
    """A device option that cannot be honoured; the message says why."""


def parse_gpu_ids(text: str) -> list[int]:
    """'0,1' -> [0, 1]; refuses anything but distinct non-negative integers."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise DeviceError(
            f"--gpus takes GPU numbers separated by commas, like 0,1 (got {text!r})"
        ) from exc
    if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
        raise DeviceError(f"--gpus takes distinct GPU numbers, like 0,1 (got {text!r})")
    return ids


def pin_gpus(ids: list[int]) -> None:
    """Make only GPUs `ids` visible to this process, so several workers share a machine.

    Set before TensorFlow or JAX starts (CUDA_VISIBLE_DEVICES); where TensorFlow was already
    imported, through tf.config.set_visible_devices while its runtime is still unstarted."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        missing = [i for i in ids if i >= len(gpus)]
        if missing:
            raise DeviceError(f"no GPU {missing[0]}: this machine shows {len(gpus)}")
        tf.config.set_visible_devices([gpus[i] for i in ids], "GPU")
    elif "jax" in sys.modules:
        raise DeviceError("pin GPUs before JAX is imported (start the worker with --gpus)")


def split_cpu(count: int) -> None:
    """Show the CPU as `count` logical devices, so the multi-device path runs without a GPU
    (tests, CI). Must run before the backend starts."""
    if count < 2:
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    else:
        raise DeviceError(f"--cpu-devices needs the tensorflow or jax backend (not {backend})")


def detect_gpus() -> list[str]:
    """Names of visible GPUs; `CHANNELHUB_FORCE_CPU=1` hides them (a CPU-only worker)."""
    if settings().force_cpu:
        return []
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [_tf_gpu_name(d) for d in tf.config.list_physical_devices("GPU")]
        if backend == "jax":
            import jax

            return [f"{d} {d.device_kind}" for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver means no usable GPU, not a dead worker
        return []
    return []


def _tf_gpu_name(device) -> str:
    import tensorflow as tf

    index = device.name.rsplit(":", 1)[-1]
    details = tf.config.experimental.get_device_details(device)
    return f"gpu:{index} {details.get('device_name', '')}".strip()
