"""The prediction log: input PNGs under the artifact folder, rows and rollups group-committed by
one thread. A request awaits its row's commit before it answers, so an acknowledged prediction is
stored; the buffer is bounded, and a writer that cannot write refuses rather than acknowledges.
A request alone in its process stores its input file itself while its model runs (its answer
waits only for its row), and a batch's rollup figures are counted after its requests are told,
unless the rollups are written in that very transaction."""

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
from sqlalchemy import text

from core.ml.images import encode_png
from core.serving.rollup_buffer import RollupBuffer, deltas_of
from db.artifact_store import ArtifactStore, as_store
from db.engine import session_scope
from db.models import utcnow
from db.repo.log_writes import PROBE, SQLiteLogWriter, sqlite_file
from db.repo.predictions import PredictionRecord, insert_predictions
from db.repo.rollups import RollupDelta, add_to_rollups

log = logging.getLogger("channelhub.serving")

# Pauses between the attempts at one batch while the writer is healthy (a locked or briefly
# absent database); once a batch has failed, later ones get one attempt until a write succeeds.
RETRY_BACKOFF_S = (0.05, 0.25)
MAX_PENDING = 4096
ROLLUP_SECONDS = 1.0
# While a write has failed, an empty transaction this often tells when the database is back.
PROBE_SECONDS = 1.0


def input_path_for(channel_slug: str, prediction_id: str, when: datetime) -> str:
    """Where a prediction's input image goes, relative to the artifact folder: one of 256 folders
    a day, picked by the id's random last digits. Serving processes that create files in one
    folder take turns on its lock (300 µs a file for two processes, against 30 µs apart), and a
    busy day's million inputs are not one directory."""
    return f"inputs/{channel_slug}/{when:%Y%m%d}/{prediction_id[-2:]}/{prediction_id}.png"


Logged = tuple[PredictionRecord, "np.ndarray | None"]


def rollup_deltas(logged: list[Logged]) -> list[RollupDelta]:
    """One delta per channel, version, arm and finest bucket: counts and binned histograms of
    the given (record, input image) pairs."""
    return deltas_of(RollupBuffer.of_rows(logged))


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
    record: PredictionRecord
    image: np.ndarray | None
    png: bytes | None = None  # the image already encoded (the upload itself), else encoded here
    input_stored: bool = False  # the request wrote the input file itself (`store_input_early`)
    seq: int = 0  # set when the log takes it
    future: Future = field(default_factory=Future)


def _rows_of(batch: list[_Entry]) -> list[Logged]:
    return [(e.record, e.image) for e in batch]


class PredictionLog:
    """Accepts answered predictions and group-commits them from one background thread: each
    transaction takes every row that arrived while the previous one was being written (at most
    `flush_rows`), so the write cost is shared by all the requests that wait on it.

    `submit` returns a future resolved when the row is committed (or failed with `LogRefused`);
    `record` is its awaitable form for requests. `flush_seconds` is how long the writer may
    gather rows before a write when no one waits (0: write at once, the serving default).
    Rollups are written at most every `rollup_seconds` (see core/serving/rollup_buffer.py; 0:
    with every batch), and at once by `flush` and `close`.
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
        rollup_seconds: float = ROLLUP_SECONDS,
    ) -> None:
        self.database_url = database_url
        # False only in bench/serving.py, which measures what keeping the rollups costs.
        self.rollups = rollups
        self.artifacts = as_store(artifact_root)
        self.flush_seconds = flush_seconds
        self.flush_rows = max(1, flush_rows)
        self.max_pending = max(1, max_pending)
        self.rollup_seconds = max(0.0, rollup_seconds)
        self._rollups = RollupBuffer()
        self._rollups_written_at = time.monotonic()
        self._cond = threading.Condition()
        self._buffer: list[_Entry] = []
        self._pending: set[str] = set()
        self._submitted = 0
        self._written = 0
        self._flush_asked = self._flush_done = self._flush_target = 0
        self._closing = False
        self.rows_written = 0
        self.failed_rows = 0
        self.last_error = ""
        self._healthy = True
        self._probed_at = 0.0
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
            return self._append(_Entry(record, image))

    async def record(
        self,
        record: PredictionRecord,
        image: np.ndarray | None,
        *,
        png: bytes | None = None,
        input_stored: bool = False,
    ) -> None:
        """Store one row before the caller answers; `LogRefused` when full, closed or failing.
        `png`, when given, is `image` already encoded as PNG (stored as it is); `input_stored`:
        `store_input_early` wrote it (removed here again if the row is refused at once)."""
        try:
            with self._cond:
                if len(self._buffer) >= self.max_pending:
                    raise LogRefused(
                        f"the prediction log is full ({len(self._buffer)} rows waiting)"
                    )
                entry_future = self._append(_Entry(record, image, png, input_stored))
        except LogRefused:
            if input_stored and record.input_path is not None:
                self.discard_input(record.input_path)
            raise
        await asyncio.wrap_future(entry_future)

    def store_input_early(self, path: str, image: np.ndarray, png: bytes | None) -> bool:
        """Write a request's input file now, from the request's thread, when the writer has no
        rows waiting and the store is a local folder: while the model runs, so the answer
        waits only for the row. False when not (or the write failed): the writer stores it
        with the row. The caller passes `input_stored=True` to `record`, or calls
        `discard_input` if the request ends without a row."""
        if self._buffer or not self.artifacts.is_local(path):
            return False
        try:
            self.artifacts.write_bytes(path, png or encode_png(image))
        except OSError as exc:  # the writer tries again with the row, and refuses if it fails
            log.warning("could not store %s ahead of its row: %s", path, exc)
            return False
        return True

    def discard_input(self, path: str) -> None:
        """Remove an input stored by `store_input_early` whose row will not come."""
        self._remove_inputs([path])

    def _has_room(self) -> bool:
        return self._closing or len(self._buffer) < self.max_pending

    def _append(self, entry: _Entry) -> Future:
        if self._closing:
            raise LogRefused("the server is shutting down")
        self._submitted += 1
        entry.seq = self._submitted
        self._buffer.append(entry)
        self._pending.add(entry.record.id)
        if len(self._buffer) == 1 or len(self._buffer) >= self.flush_rows:
            self._cond.notify_all()
        return entry.future

    def is_pending(self, prediction_id: str) -> bool:
        with self._cond:
            return prediction_id in self._pending

    def health(self) -> LogHealth:
        with self._cond:
            return LogHealth(self._healthy, self.last_error, len(self._buffer), self.failed_rows)

    def count_error(
        self, channel_id: int, version_id: int, arm: str, at: datetime | None = None
    ) -> None:
        """Count a request that failed after it was routed (the model raised) into its arm's
        rollups: the error rate the SLOs and the canary judge."""
        if self.rollups:
            self._rollups.add_error(channel_id, version_id, arm, at or utcnow())
            with self._cond:
                self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything submitted so far now, rollups included; False if that did not
        finish in `timeout`."""
        with self._cond:
            self._flush_target = target = self._submitted
            self._flush_asked += 1
            asked = self._flush_asked
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._written >= target and self._flush_done >= asked, timeout
            )

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
        if self._rollups:
            log.error("prediction log closed with rollup counts it could not write")

    def _run(self) -> None:
        wake = min(self.rollup_seconds or PROBE_SECONDS, PROBE_SECONDS)
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work, wake)
                if self.flush_seconds > 0 and self._buffer:
                    self._cond.wait_for(self._batch_is_due, self.flush_seconds)
                batch = self._buffer[: self.flush_rows]
                asked, target, closing = self._flush_asked, self._flush_target, self._closing
                forced = closing or self._flush_done < asked
            if batch:
                with_rollups = self.rollups and (forced or self._rollups_due())
                error = self._write_with_retries(batch, with_rollups)
                self._finish(batch, error)
                if not error and self.rollups and not with_rollups:  # owed from now on
                    self._rollups.add(RollupBuffer.of_rows(_rows_of(batch)))
            elif forced or self._rollups_due():
                self._write_rollups_alone()
            elif self._probe_due():
                self._probe()
            if forced and (not batch or batch[-1].seq >= target):
                with self._cond:  # the rows up to the flush and the rollups owed are written
                    self._flush_done = max(self._flush_done, asked)
                    self._cond.notify_all()
            if closing and not batch:
                return

    def _has_work(self) -> bool:
        return (
            bool(self._buffer)
            or self._closing
            or self._flush_done < self._flush_asked
            or self._rollups_due()
            or self._probe_due()
        )

    def _probe_due(self) -> bool:
        return not self._healthy and time.monotonic() - self._probed_at >= PROBE_SECONDS

    def _probe(self) -> None:
        """An empty write while the log is failing: readiness comes back with the database,
        not only with the next prediction (which a balancer reading /readyz would not send)."""
        self._probed_at = time.monotonic()
        try:
            self._commit([], [], probe=True)
        except Exception as exc:  # still failing: say the latest reason
            with self._cond:
                self.last_error = f"{type(exc).__name__}: {exc}"
            return
        with self._cond:
            self._healthy = True
        log.info("prediction log can write again")

    def _rollups_due(self) -> bool:
        return bool(self._rollups) and (
            time.monotonic() - self._rollups_written_at >= self.rollup_seconds
        )

    def _batch_is_due(self) -> bool:
        return (
            self._closing
            or self._flush_done < self._flush_asked
            or len(self._buffer) >= self.flush_rows
        )

    def _write_with_retries(self, batch: list[_Entry], with_rollups: bool) -> str:
        """'' once the batch is committed, else why it could not be."""
        pauses = RETRY_BACKOFF_S if self._healthy else ()
        error = self._write(batch, with_rollups)
        for pause in pauses:
            if not error:
                break
            time.sleep(pause)
            error = self._write(batch, with_rollups)
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

    def _write(self, batch: list[_Entry], with_rollups: bool) -> str:
        """Files, then rows (and the rollups, when due) in one transaction; '' on success, else
        the error (and the batch's files are removed again, so no input lies without its row).
        `with_rollups`: the rollups owed and the batch's figures go into this transaction (else
        `_run` adds the batch's figures to those owed once its requests are told)."""
        inputs = [e for e in batch if e.image is not None and e.record.input_path is not None]
        figures = RollupBuffer.of_rows(_rows_of(batch)) if with_rollups else {}
        owed = self._rollups.take() if with_rollups else None
        try:
            files = {e.record.input_path: e.png or encode_png(e.image)
                     for e in inputs if not e.input_stored}  # fmt: skip
            self.artifacts.write_many(files)  # at once: an object store takes them in parallel
            self._commit(
                [e.record for e in batch], deltas_of(owed, figures) if owed is not None else []
            )
        except Exception as exc:  # the database may be locked, read-only or away
            self._remove_inputs([e.record.input_path for e in inputs])
            for entry in inputs:  # a retry writes them again
                entry.input_stored = False
            if owed:
                self._rollups.add(owed)
            return f"{type(exc).__name__}: {exc}"
        if owed is not None:
            self._rollups_written_at = time.monotonic()
        return ""

    def _write_rollups_alone(self) -> None:
        """The rollups owed, in a transaction of their own (no rows came for a while)."""
        owed = self._rollups.take()
        if not owed:
            return
        try:
            self._commit([], deltas_of(owed))
        except Exception as exc:  # kept, and tried again with the next write
            self._rollups.add(owed)
            log.warning("prediction log could not write its rollups: %s: %s",
                        type(exc).__name__, exc)  # fmt: skip
            return
        self._rollups_written_at = time.monotonic()

    def _commit(
        self, records: list[PredictionRecord], deltas: list[RollupDelta], probe: bool = False
    ) -> None:
        """Rows and rollups in one transaction; `probe`: nothing, but fail as a write would."""
        if self._sqlite is not None:
            self._sqlite.write(records, deltas, probe=probe)
            return
        with session_scope(self.database_url) as session:
            # Rows first: the insert takes the write lock before the rollups are read.
            insert_predictions(session=session, records=records)
            add_to_rollups(session=session, deltas=deltas)
            if probe:
                session.execute(text(PROBE))

    def _remove_inputs(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self.artifacts.delete(path)
            except OSError as exc:  # the store is away too: the writer must go on all the same
                log.warning("could not remove %s after a failed write: %s", path, exc)
