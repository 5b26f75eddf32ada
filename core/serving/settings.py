"""Limits and tuning of the serving API, from the environment or the command line."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

MiB = 1024 * 1024


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

    @classmethod
    def from_env(cls) -> ServingSettings:
        env = os.environ
        return cls(
            max_upload_bytes=int(env.get("CHANNELHUB_MAX_UPLOAD_BYTES", 10 * MiB)),
            max_pixels=int(env.get("CHANNELHUB_MAX_PIXELS", 25_000_000)),
            refresh_seconds=float(env.get("CHANNELHUB_REFRESH_SECONDS", 1.0)),
            max_batch=int(env.get("CHANNELHUB_MAX_BATCH", 32)),
            max_wait_ms=float(env.get("CHANNELHUB_BATCH_WAIT_MS", 0.0)),
        )

    def with_overrides(self, **values: object) -> ServingSettings:
        """A copy with the given fields replaced; `None` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})
