"""The micro-batcher: queued images go through the model together, and a failed batch answers
each of its requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.serving.batcher import BatchPolicy, MicroBatcher


def _image(value: int) -> np.ndarray:
    return np.full((2, 2, 1), value, dtype=np.uint8)


def test_queued_images_go_through_the_model_together():
    release, seen = threading.Event(), []

    def model(x: np.ndarray) -> np.ndarray:
        release.wait(10)
        seen.append(len(x))
        return x.reshape(len(x), -1)[:, :1].astype(np.float32)

    batcher = MicroBatcher(model, policy=BatchPolicy(max_batch=8))
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


def _counting_model(seen: list[int]):
    def model(x: np.ndarray) -> np.ndarray:
        seen.append(len(x))
        return x.reshape(len(x), -1)[:, :1].astype(np.float32)

    return model


def test_a_request_on_its_way_joins_the_batch():
    """While another request is in flight, the batch waits for it (within the gap)."""
    seen: list[int] = []
    batcher = MicroBatcher(
        _counting_model(seen), policy=BatchPolicy(max_wait_s=5.0, gap_s=2.0), in_flight=lambda: 2
    )
    try:
        first = batcher.submit(_image(1))
        threading.Event().wait(0.1)  # the second request is still being decoded
        second = batcher.submit(_image(2))
        assert [float(f.result(10)[0]) for f in (first, second)] == [1.0, 2.0]
        assert seen == [2]
    finally:
        batcher.close()


def test_a_lone_request_does_not_wait():
    """Nobody else in flight: the batch goes at once, whatever the waits allow."""
    seen: list[int] = []
    batcher = MicroBatcher(
        _counting_model(seen), policy=BatchPolicy(max_wait_s=30.0, gap_s=30.0), in_flight=lambda: 1
    )
    try:
        batcher.submit(_image(1)).result(5)  # would time out had it waited the gap
        assert seen == [1]
    finally:
        batcher.close()


def test_the_wait_ends_once_no_request_came_for_the_gap():
    """Others in flight that never reach this model (another model's, or past theirs) cost
    the batch one gap, not the whole wait."""
    seen: list[int] = []
    batcher = MicroBatcher(
        _counting_model(seen), policy=BatchPolicy(max_wait_s=30.0, gap_s=0.2), in_flight=lambda: 10
    )
    try:
        batcher.submit(_image(1)).result(5)
        assert seen == [1]
    finally:
        batcher.close()
