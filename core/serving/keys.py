"""API keys in the serving process: a token bucket per key, the keys' last use written at most
once a minute from a background thread, and log lines kept free of keys."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from db.engine import session_scope
from db.models import utcnow
from db.repo.serving_queries import LAST_USE_RESOLUTION, record_key_use

log = logging.getLogger("channelhub.serving")


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key hash: `rate` tokens a second, holding at most one second's worth
    (never less than one), so a client may burst to its rate and then keeps to it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, key_hash: str, rate: float | None) -> float:
        """0 when the request may go (its token is taken), else the seconds until it may."""
        if rate is None or rate <= 0:
            return 0.0
        capacity = max(1.0, rate)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(key_hash, _Bucket(capacity, now))
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def close(self) -> None:
        """Nothing to release for buckets kept in memory."""


def retry_after_header(seconds: float) -> str:
    """`Retry-After` takes whole seconds; round up so a client that obeys it is let through."""
    return str(max(1, math.ceil(seconds)))


class KeyUseRecorder:
    """Remembers when each channel's key was used; a thread writes it at most once a minute per
    channel, so the request path only touches a dict."""

    def __init__(self, database_url: str, *, flush_seconds: float = 5.0) -> None:
        self.database_url = database_url
        self.flush_seconds = flush_seconds
        self._pending: dict[int, datetime] = {}
        self._noted: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-use", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def seen(self, channel_id: int) -> None:
        """A request with this channel's key was accepted (cheap: a dict look-up a request)."""
        now = time.monotonic()
        if now - self._noted.get(channel_id, -math.inf) < LAST_USE_RESOLUTION.total_seconds():
            return
        with self._lock:
            self._noted[channel_id] = now
            self._pending[channel_id] = utcnow()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with session_scope(self.database_url) as session:
                record_key_use(session=session, last_used=pending)
        except Exception as exc:  # a key's last use is not worth failing requests for
            log.warning("could not record API key use: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.flush()


# A ChannelHub key (`chk_` + 32 URL-safe characters) or a credential-looking query parameter.
_SECRET = re.compile(r"chk_[A-Za-z0-9_-]{4,}|(?i:(?<=api_key=)|(?<=apikey=)|(?<=token=))[^&\s\"]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with every API key in it replaced (keys only reach logs by client mistakes, such
    as a key in a query string, which the access log would print)."""
    return _SECRET.sub(REDACTED, text)


class RedactKeys(logging.Filter):
    """A log filter that redacts keys from a record's message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            args = record.args.items()
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args}
        return True


def redact_keys_in_logs(*logger_names: str) -> None:
    """Put the redacting filter on the handlers of these loggers and of the root logger."""
    redactor = RedactKeys()
    for name in (None, *logger_names):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactKeys) for f in handler.filters):
                handler.addFilter(redactor)
