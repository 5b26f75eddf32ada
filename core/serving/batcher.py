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


@dataclass(frozen=True)
class BatchPolicy:
    """How a MicroBatcher forms its batches (see there): at most `max_batch` images, waiting
    for those on their way at most `max_wait_s`, each within `gap_s` of the last (0: no limit
    but `max_wait_s`)."""

    max_batch: int = 32
    max_wait_s: float = 0.0
    gap_s: float = 0.0


class MicroBatcher:
    """One thread per model version that runs queued images through `predict` in batches.

    A lone request is dispatched at once; when several are queued they go together. While
    other requests are on their way (`in_flight()`, the requests this process is answering,
    exceeds the batch; without it: once the batch holds two), the batch waits for them as long
    as each comes within the policy's `gap_s` of the one before, at most `max_wait_s` in all.
    Under a steady stream the requests that were answered together come back together and go
    through together again. Cut into whatever happened to be queued, 32 clients' p99 was about
    twice their p50 or more; kept whole, 1.7 to 1.9 times, at more requests/s (README).
    """

    def __init__(
        self,
        predict,
        *,
        policy: BatchPolicy = BatchPolicy(),
        in_flight: Callable[[], int] | None = None,
        name: str = "",
        on_batch: Callable[[int], None] | None = None,
    ):
        self._predict = predict
        self._on_batch = on_batch
        self.policy = policy
        self._in_flight = in_flight
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
        """Add queued items to `batch`, and those still on their way (see the class); True when
        the close sentinel was met."""
        deadline = time.monotonic() + self.policy.max_wait_s
        while len(batch) < self.policy.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                wait = self._wait_for_more(len(batch), deadline)
                if wait <= 0:
                    return False
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _wait_for_more(self, size: int, deadline: float) -> float:
        """How long to wait for the next request; 0: none is on its way, or waited enough."""
        others = self._in_flight() - size if self._in_flight is not None else size - 1
        if others <= 0 or self.policy.max_wait_s <= 0:
            return 0.0
        remaining = deadline - time.monotonic()
        return min(remaining, self.policy.gap_s) if self.policy.gap_s > 0 else remaining

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
