"""Limits and tuning of the serving API, from the one settings object or the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from db.settings import MiB, settings


@dataclass(frozen=True)
class ServingSettings:
    """Limits and tuning of the serving API; `from_env` reads the CHANNELHUB_* variables."""

    max_upload_bytes: int = 10 * MiB
    max_pixels: int = 25_000_000
    refresh_seconds: float = 1.0
    max_batch: int = 32
    max_wait_ms: float = 0.0
    flush_seconds: float = 0.25
    flush_rows: int = 256
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
        )

    def with_overrides(self, **values: object) -> ServingSettings:
        """A copy with the given fields replaced; `None` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})
