"""The prediction log: input PNGs under the artifact folder, rows and rollups group-committed by
one thread. A request awaits its row's commit before it answers, so an acknowledged prediction is
stored; the buffer is bounded, and a writer that cannot write refuses rather than acknowledges."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from core.ml import monitoring_stats as stats
from core.ml.images import encode_png
from db.artifact_store import ArtifactStore, as_store
from db.engine import session_scope
from db.models import ROLLUP_RESOLUTIONS
from db.repo.log_writes import SQLiteLogWriter, sqlite_file
from db.repo.predictions import PredictionRecord, insert_predictions
from db.repo.rollups import RollupDelta, add_to_rollups, bucket_start

log = logging.getLogger("channelhub.serving")

# Pauses between the attempts at one batch while the writer is healthy (a locked or briefly
# absent database); once a batch has failed, later ones get one attempt until a write succeeds.
RETRY_BACKOFF_S = (0.05, 0.25)
MAX_PENDING = 4096


def input_path_for(channel_slug: str, prediction_id: str, when: datetime) -> str:
    """Where a prediction's input image goes, relative to the artifact folder."""
    return f"inputs/{channel_slug}/{when:%Y%m%d}/{prediction_id}.png"


Logged = tuple[PredictionRecord, "np.ndarray | None"]


def rollup_deltas(logged: list[Logged]) -> list[RollupDelta]:
    """One delta per channel, version, arm and finest bucket: counts and binned histograms of
    the given (record, input image) pairs."""
    groups: dict[tuple, list[Logged]] = {}
    finest = min(ROLLUP_RESOLUTIONS)
    for record, image in logged:
        r = record
        key = (r.channel_id, r.version_id, r.arm, bucket_start(r.created_at, finest))
        groups.setdefault(key, []).append((record, image))
    return [_delta(key, group) for key, group in groups.items()]


def _delta(key: tuple, group: list[Logged]) -> RollupDelta:
    records = [record for record, _ in group]
    latencies = np.array([r.latency_ms for r in records], dtype=np.float64)
    images = [image for _, image in group if image is not None]
    histograms = {
        "latency_hist": stats.latency_histogram(latencies),
        "confidence_hist": stats.confidence_histogram([r.confidence for r in records]),
        "class_counts": stats.class_mix(
            [r.predicted_class for r in records], max(len(r.probabilities) for r in records)
        ),
    }
    if images:
        histograms["intensity_hist"] = stats.mean_intensity_histogram(images)
    counts = {"requests": len(records), "simulated": sum(r.simulated for r in records)}
    return RollupDelta(
        *key, counts=counts, latency_sum_ms=float(latencies.sum()), histograms=histograms
    )


class LogRefused(RuntimeError):
    """The log cannot take or keep a prediction now (full, closed, or the database refuses the
    write): the request is answered 503 with `Retry-After`, never 200."""

    def __init__(self, reason: str, retry_after_s: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LogHealth:
    """What `/readyz` and `/metrics` say about the writer."""

    ok: bool
    error: str
    pending: int
    failed_rows: int


@dataclass
class _Entry:
    seq: int
    record: PredictionRecord
    image: np.ndarray | None
    png: bytes | None = None  # the image already encoded (the upload itself), else encoded here
    future: Future = field(default_factory=Future)


class PredictionLog:
    """Accepts answered predictions and group-commits them from one background thread: each
    transaction takes every row that arrived while the previous one was being written (at most
    `flush_rows`), so the write cost is shared by all the requests that wait on it.

    `submit` returns a future resolved when the row is committed (or failed with `LogRefused`);
    `record` is its awaitable form for requests. `flush_seconds` is how long the writer may
    gather rows before a write when no one waits (0: write at once, the serving default).
    """

    def __init__(
        self,
        database_url: str,
        artifact_root: Path | ArtifactStore,
        *,
        flush_seconds: float = 0.0,
        flush_rows: int = 256,
        max_pending: int = MAX_PENDING,
        rollups: bool = True,
    ) -> None:
        self.database_url = database_url
        # False only in bench/serving.py, which measures what keeping the rollups costs.
        self.rollups = rollups
        self.artifacts = as_store(artifact_root)
        self.flush_seconds = flush_seconds
        self.flush_rows = max(1, flush_rows)
        self.max_pending = max(1, max_pending)
        self._cond = threading.Condition()
        self._buffer: list[_Entry] = []
        self._pending: set[str] = set()
        self._submitted = 0
        self._written = 0
        self._flush_wanted = False
        self._closing = False
        self.rows_written = 0
        self.failed_rows = 0
        self.last_error = ""
        self._healthy = True
        sqlite_path = sqlite_file(database_url)
        self._sqlite = SQLiteLogWriter(sqlite_path) if sqlite_path is not None else None
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, record: PredictionRecord, image: np.ndarray | None) -> Future:
        """Queue one row (and its input image, written to `record.input_path`), waiting for room
        while the buffer is full (the backfill's pace); the future resolves once it is stored."""
        with self._cond:
            if not self._cond.wait_for(self._has_room, 600):
                raise LogRefused("the prediction log stayed full for 10 minutes")
            return self._append(record, image)

    async def record(
        self, record: PredictionRecord, image: np.ndarray | None, *, png: bytes | None = None
    ) -> None:
        """Store one row before the caller answers; `LogRefused` when full, closed or failing.
        `png`, when given, is `image` already encoded as PNG (stored as it is)."""
        with self._cond:
            if len(self._buffer) >= self.max_pending:
                raise LogRefused(f"the prediction log is full ({len(self._buffer)} rows waiting)")
            entry_future = self._append(record, image, png)
        await asyncio.wrap_future(entry_future)

    def _has_room(self) -> bool:
        return self._closing or len(self._buffer) < self.max_pending

    def _append(
        self, record: PredictionRecord, image: np.ndarray | None, png: bytes | None = None
    ) -> Future:
        if self._closing:
            raise LogRefused("the server is shutting down")
        self._submitted += 1
        entry = _Entry(self._submitted, record, image, png)
        self._buffer.append(entry)
        self._pending.add(record.id)
        if len(self._buffer) == 1 or len(self._buffer) >= self.flush_rows:
            self._cond.notify_all()
        return entry.future

    def is_pending(self, prediction_id: str) -> bool:
        with self._cond:
            return prediction_id in self._pending

    def health(self) -> LogHealth:
        with self._cond:
            return LogHealth(self._healthy, self.last_error, len(self._buffer), self.failed_rows)

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything submitted so far now; False if that did not finish in `timeout`."""
        with self._cond:
            target = self._submitted
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._written >= target, timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Write what is buffered (its requests are still waiting) and stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._sqlite is not None and not self._thread.is_alive():
            self._sqlite.close()
        if self._buffer:
            log.error("prediction log closed with %d unwritten rows", len(self._buffer))

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._buffer or self._closing)
                if self.flush_seconds > 0:
                    self._cond.wait_for(self._batch_is_due, self.flush_seconds)
                batch = self._buffer[: self.flush_rows]
                self._flush_wanted = False
                if not batch and self._closing:
                    return
            self._finish(batch, self._write_with_retries(batch))

    def _batch_is_due(self) -> bool:
        return self._closing or self._flush_wanted or len(self._buffer) >= self.flush_rows

    def _write_with_retries(self, batch: list[_Entry]) -> str:
        """'' once the batch is committed, else why it could not be."""
        pauses = RETRY_BACKOFF_S if self._healthy else ()
        error = self._write(batch)
        for pause in pauses:
            if not error:
                break
            time.sleep(pause)
            error = self._write(batch)
        return error

    def _finish(self, batch: list[_Entry], error: str) -> None:
        """Take the batch off the buffer and tell its requests how it went."""
        with self._cond:
            del self._buffer[: len(batch)]
            self._pending.difference_update(e.record.id for e in batch)
            self._written = batch[-1].seq
            self._healthy = not error
            if error:
                self.last_error = error
                self.failed_rows += len(batch)
            else:
                self.rows_written += len(batch)
            self._cond.notify_all()
        if error:
            log.error("prediction log refused %d rows: %s", len(batch), error)
        refused = LogRefused(f"the prediction log cannot write: {error}") if error else None
        for entry in batch:
            try:
                if refused is None:
                    entry.future.set_result(None)
                else:
                    entry.future.set_exception(refused)
            except InvalidStateError:  # its client went away; the row is stored all the same
                pass

    def _write(self, batch: list[_Entry]) -> str:
        """Files, then rows and rollups in one transaction; '' on success, else the error (and
        the files written for the batch are removed again, so no input lies without its row)."""
        images: dict[str, bytes] = {}
        try:
            images = {e.record.input_path: e.png or encode_png(e.image) for e in batch
                      if e.image is not None and e.record.input_path is not None}  # fmt: skip
            self.artifacts.write_many(images)  # at once: an object store takes them in parallel
            records = [e.record for e in batch]
            deltas = rollup_deltas([(e.record, e.image) for e in batch]) if self.rollups else []
            if self._sqlite is not None:
                self._sqlite.write(records, deltas)
            else:
                with session_scope(self.database_url) as session:
                    # Rows first: the insert takes the write lock before the rollups are read.
                    insert_predictions(session=session, records=records)
                    add_to_rollups(session=session, deltas=deltas)
        except Exception as exc:  # the database may be locked, read-only or away
            self._remove_inputs(list(images))
            return f"{type(exc).__name__}: {exc}"
        return ""

    def _remove_inputs(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self.artifacts.delete(path)
            except OSError as exc:  # the store is away too: the writer must go on all the same
                log.warning("could not remove %s after a failed write: %s", path, exc)
