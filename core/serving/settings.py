"""Limits and tuning of the serving API, from the one settings object or the command line."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from db.settings import VARIABLES, MiB, settings

if TYPE_CHECKING:
    from core.serving.batcher import BatchPolicy

MAX_DEFAULT_WORKERS = 8


# The fields that come from the environment (db.settings.Settings has the same names).
FROM_ENV = (
    "max_upload_bytes", "max_pixels", "refresh_seconds", "max_batch", "batch_wait_ms",
    "batch_gap_ms",
)  # fmt: skip


@dataclass(frozen=True)
class ServingSettings:
    """Limits and tuning of the serving API; `from_env` reads the CHANNELHUB_* variables."""

    max_upload_bytes: int = 10 * MiB
    max_pixels: int = 25_000_000
    refresh_seconds: float = 1.0
    max_batch: int = 32
    # A batch waits for requests on their way: each within batch_gap_ms of the last,
    # batch_wait_ms in all (core/serving/batcher.py).
    batch_wait_ms: float = 20.0
    batch_gap_ms: float = 1.5
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
        return cls(**{name: getattr(s, name) for name in FROM_ENV})

    def batch_policy(self) -> BatchPolicy:
        from core.serving.batcher import BatchPolicy  # numpy: not for the CLI's start-up

        return BatchPolicy(self.max_batch, self.batch_wait_ms / 1000, self.batch_gap_ms / 1000)

    def with_overrides(self, **values: object) -> ServingSettings:
        """A copy with the given fields replaced; `None` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_env(self) -> dict[str, str]:
        """The variables that carry these settings to worker processes (which read `from_env`)."""
        variable = {name: key for key, name in VARIABLES.items()}
        return {variable[name]: str(getattr(self, name)) for name in FROM_ENV}


def default_workers() -> int:
    """`CHANNELHUB_WORKERS`, else one serving process per CPU core this process may use,
    at most MAX_DEFAULT_WORKERS (each holds its own copy of every model)."""
    configured = settings().workers
    if configured > 0:
        return configured
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS))
