"""Batched prediction log: input PNGs under the artifact folder, rows written off the hot path."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from core.ml import monitoring_stats as stats
from core.ml.images import encode_png
from db.engine import session_scope
from db.models import ROLLUP_RESOLUTIONS
from db.repo.predictions import PredictionRecord, insert_predictions
from db.repo.rollups import RollupDelta, add_to_rollups, bucket_start

log = logging.getLogger("channelhub.serving")

RETRY_BACKOFF_S = 0.5


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


@dataclass(frozen=True)
class _Entry:
    seq: int
    record: PredictionRecord
    image: np.ndarray | None


class PredictionLog:
    """Accepts answered predictions and writes them in batches from one background thread.

    `flush()` returns once everything submitted before the call is in the database;
    `close()` drains the buffer, so nothing acknowledged to a client is lost on a clean stop.
    """

    def __init__(
        self,
        database_url: str,
        artifact_root: Path,
        *,
        flush_seconds: float = 0.25,
        flush_rows: int = 256,
        rollups: bool = True,
    ) -> None:
        self.database_url = database_url
        # False only in bench/serving.py, which measures what keeping the rollups costs.
        self.rollups = rollups
        self.artifact_root = artifact_root
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._cond = threading.Condition()
        self._buffer: list[_Entry] = []
        self._pending: set[str] = set()
        self._submitted = 0
        self._written = 0
        self._flush_wanted = False
        self._closing = False
        self._dirs: set[Path] = set()
        self.rows_written = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, record: PredictionRecord, image: np.ndarray | None) -> None:
        """Queue one row (and its input image, written to `record.input_path`)."""
        with self._cond:
            if self._closing:
                raise RuntimeError("the prediction log is closed")
            self._submitted += 1
            self._buffer.append(_Entry(self._submitted, record, image))
            self._pending.add(record.id)
            if len(self._buffer) >= self.flush_rows:
                self._cond.notify_all()

    def is_pending(self, prediction_id: str) -> bool:
        with self._cond:
            return prediction_id in self._pending

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything submitted so far now; False if that did not finish in `timeout`."""
        with self._cond:
            target = self._submitted
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._written >= target, timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Drain the buffer and stop the writer thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._buffer:
            log.error("prediction log closed with %d unwritten rows", len(self._buffer))

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._should_write, self.flush_seconds)
                batch = self._buffer[: max(self.flush_rows, 1) * 8]
                self._flush_wanted = False
                if not batch and self._closing:
                    return
            if batch and not self._write(batch):
                self._backoff(RETRY_BACKOFF_S)

    def _should_write(self) -> bool:
        return self._closing or self._flush_wanted or len(self._buffer) >= self.flush_rows

    def _backoff(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait(seconds)

    def _write(self, batch: list[_Entry]) -> bool:
        """Write files, then rows in one transaction; on failure the batch stays buffered."""
        try:
            for entry in batch:
                self._write_image(entry)
            with session_scope(self.database_url) as session:
                # Rows first: the insert takes SQLite's write lock before the rollups are read.
                insert_predictions(session=session, records=[e.record for e in batch])
                if self.rollups:
                    deltas = rollup_deltas([(e.record, e.image) for e in batch])
                    add_to_rollups(session=session, deltas=deltas)
        except Exception as exc:  # the DB may be locked or away: keep the rows and retry
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("prediction log write of %d rows failed: %s", len(batch), self.last_error)
            return False
        with self._cond:
            del self._buffer[: len(batch)]
            self._pending.difference_update(e.record.id for e in batch)
            self._written = batch[-1].seq
            self.rows_written += len(batch)
            self._cond.notify_all()
        return True

    def _write_image(self, entry: _Entry) -> None:
        if entry.image is None or entry.record.input_path is None:
            return
        path = self.artifact_root / entry.record.input_path
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        path.write_bytes(encode_png(entry.image))
