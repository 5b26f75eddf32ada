"""Rate limits that hold across the worker processes of one server: the token buckets live in a
small file every worker maps into memory, updated under a file lock (a few microseconds)."""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import multiprocessing
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.serving.keys import RateLimiter

SLOTS = 4096  # keys with a rate limit that one server tracks at once
_SLOT = struct.Struct("<16sdd")  # key digest, tokens, last refill (CLOCK_MONOTONIC, host-wide)
_EMPTY = bytes(16)


def shared_limits_path(server_pid: int) -> Path:
    """The bucket file of the server whose supervising process is `server_pid`."""
    return Path(tempfile.gettempdir()) / f"channelhub-serve-{server_pid}.limits"


def limiter_for_this_process() -> RateLimiter:
    """A worker started by `channelhub serve --workers N` shares its buckets with its siblings
    (through its parent's file); a server of one process keeps them in memory."""
    if multiprocessing.parent_process() is None:
        return RateLimiter()
    return SharedRateLimiter(shared_limits_path(os.getppid()))


class SharedRateLimiter(RateLimiter):
    """`RateLimiter`'s token buckets in a file shared by processes (open addressing on the key
    digest; a full table lets requests through rather than refusing them)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        size = SLOTS * _SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._thread_lock = threading.Lock()

    def retry_after(self, key_hash: str, rate: float | None) -> float:
        if rate is None or rate <= 0:
            return 0.0
        digest = hashlib.blake2b(key_hash.encode(), digest_size=16).digest()
        capacity = max(1.0, rate)
        start = int.from_bytes(digest[:4], "little") % SLOTS
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                now = self.clock()  # read under the lock, so refills never go backwards
                for probe in range(SLOTS):
                    offset = ((start + probe) % SLOTS) * _SLOT.size
                    slot_key, tokens, at = _SLOT.unpack_from(self._map, offset)
                    if slot_key == _EMPTY:
                        tokens, at = capacity, now
                    elif slot_key != digest:
                        continue
                    tokens = min(capacity, tokens + max(0.0, now - at) * rate)
                    wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
                    tokens -= 1.0 if tokens >= 1.0 else 0.0
                    _SLOT.pack_into(self._map, offset, digest, tokens, now)
                    return wait
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return 0.0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
