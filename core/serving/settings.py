"""Limits and tuning of the serving API, from the one settings object or the command line."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from db.settings import MiB, settings

MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class ServingSettings:
    """Limits and tuning of the serving API; `from_env` reads the CHANNELHUB_* variables."""

    max_upload_bytes: int = 10 * MiB
    max_pixels: int = 25_000_000
    refresh_seconds: float = 1.0
    max_batch: int = 32
    # A batch waits for requests on their way: each within gap_ms of the last, max_wait_ms in all.
    max_wait_ms: float = 20.0
    gap_ms: float = 1.5
    # The prediction log: 0 s = a request's row is written at once (group-committed with the
    # rows that arrive meanwhile, at most flush_rows a transaction); max_pending rows wait at most.
    flush_seconds: float = 0.0
    flush_rows: int = 256
    max_pending: int = 4096
    # Rollups are written at most this often (0: with every batch): core/serving/rollup_buffer.py
    rollup_seconds: float = 1.0
    seed: int | None = None
    # Not configurable: only bench/serving.py turns it off, to measure what rollups cost.
    rollups: bool = True

    @classmethod
    def from_env(cls) -> ServingSettings:
        s = settings()
        return cls(
            max_upload_bytes=s.max_upload_bytes,
            max_pixels=s.max_pixels,
            refresh_seconds=s.refresh_seconds,
            max_batch=s.max_batch,
            max_wait_ms=s.batch_wait_ms,
            gap_ms=s.batch_gap_ms,
        )

    def with_overrides(self, **values: object) -> ServingSettings:
        """A copy with the given fields replaced; `None` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_env(self) -> dict[str, str]:
        """The variables that carry these settings to worker processes (which read `from_env`)."""
        return {
            "CHANNELHUB_MAX_UPLOAD_BYTES": str(self.max_upload_bytes),
            "CHANNELHUB_MAX_PIXELS": str(self.max_pixels),
            "CHANNELHUB_REFRESH_SECONDS": str(self.refresh_seconds),
            "CHANNELHUB_MAX_BATCH": str(self.max_batch),
            "CHANNELHUB_BATCH_WAIT_MS": str(self.max_wait_ms),
            "CHANNELHUB_BATCH_GAP_MS": str(self.gap_ms),
        }


def default_workers() -> int:
    """`CHANNELHUB_WORKERS`, else one serving process per CPU core this process may use,
    at most MAX_DEFAULT_WORKERS (each holds its own copy of every model)."""
    configured = settings().workers
    if configured > 0:
        return configured
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS))
