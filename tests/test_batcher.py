"""The micro-batcher: queued images go through the model together, and a failed batch answers
each of its requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.serving.batcher import MicroBatcher


def _image(value: int) -> np.ndarray:
    return np.full((2, 2, 1), value, dtype=np.uint8)


def test_queued_images_go_through_the_model_together():
    release, seen = threading.Event(), []

    def model(x: np.ndarray) -> np.ndarray:
        release.wait(10)
        seen.append(len(x))
        return x.reshape(len(x), -1)[:, :1].astype(np.float32)

    batcher = MicroBatcher(model, max_batch=8)
    try:
        futures = [batcher.submit(_image(v)) for v in (1, 2, 3)]
        release.set()
        answers = [f.result(10) for f in futures]
        assert [float(a[0]) for a in answers] == [1.0, 2.0, 3.0]
        assert sum(seen) == 3 and len(seen) < 3  # those that waited went through together
    finally:
        batcher.close()


def test_a_failed_batch_is_answered_too():
    def model(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("kernel failed")

    batcher = MicroBatcher(model)
    try:
        with pytest.raises(RuntimeError, match="kernel failed"):
            batcher.submit(_image(1)).result(10)
    finally:
        batcher.close()
