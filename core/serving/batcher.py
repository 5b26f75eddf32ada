"""Micro-batching: one thread per loaded model version runs the queued images in batches."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("channelhub.serving")


class ModelUnavailable(RuntimeError):
    """The version a request was routed to is no longer being served (retry the request)."""


@dataclass
class _Item:
    image: np.ndarray
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One thread per model version that runs queued images through `predict` in batches.

    A lone request is dispatched at once; when several are queued they go together, and
    once concurrency is seen the batch waits at most `max_wait_s` for stragglers.
    """

    def __init__(
        self,
        predict,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.0,
        name: str = "",
        on_batch: Callable[[int], None] | None = None,
    ):
        self._predict = predict
        self._on_batch = on_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one image (already of the model's input shape); the future gets its (K,) probs."""
        if self._closed:
            raise ModelUnavailable("this model version is no longer served")
        item = _Item(image)
        self._queue.put(item)
        return item.future

    async def predict(self, image: np.ndarray) -> np.ndarray:
        return await asyncio.wrap_future(self.submit(image))

    def close(self, timeout: float = 30.0) -> None:
        """Answer everything already queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = self._fill(batch)
            self._dispatch(batch)
            if stop:
                return

    def _fill(self, batch: list[_Item]) -> bool:
        """Add queued items to `batch`; True when the close sentinel was met."""
        deadline = None
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if len(batch) == 1 or self.max_wait_s <= 0:
                    return False
                deadline = deadline or time.monotonic() + self.max_wait_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _dispatch(self, batch: list[_Item]) -> None:
        try:
            probs = self._predict(np.stack([item.image for item in batch]))
        except Exception as exc:  # every waiting request learns of the failure
            log.exception("batch of %d failed", len(batch))
            for item in batch:
                item.future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch))
        for item, row in zip(batch, probs, strict=True):
            item.future.set_result(row)
