"""Even shares of the keep-alive connections between the serving processes of one server.

The worker processes accept from one shared socket, and whichever is awake first takes the
connections that arrive together: 32 clients split 10/22 or even 32/0 between two workers. A
keep-alive connection stays where it landed, so the busier worker's requests queued behind
twice the work (p99 3.3× the p50, against 1.8× when even) while the other idled. So each worker
publishes how many connections sent it a request in the last quarter second, in a small file its
siblings map too; a worker holding more than its share (the even share plus `SLACK`) answers
one request at a time with `Connection: close`. The client reconnects (standard HTTP/1.1), and
the new connection mostly lands on a less busy worker: the one waiting in accept.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WINDOW_S = 0.25  # a connection counts while it sent a request this recently
SLACK = 1  # connections above the even share a worker may keep
SHED_EVERY_S = 0.01  # at most one connection closed per worker this often
PUBLISH_EVERY_S = 0.005
SLOTS = 64  # workers one server may have (MAX_DEFAULT_WORKERS is 8; --workers is free)
_SLOT = struct.Struct("<qqd")  # pid, connections, when published (CLOCK_MONOTONIC, host-wide)


def shares_path(server_pid: int) -> Path:
    """The connection-count file of the server whose supervising process is `server_pid`."""
    return Path(tempfile.gettempdir()) / f"channelhub-serve-{server_pid}.conns"


def over_share(mine: int, counts: list[int], slack: int = SLACK) -> bool:
    """True when a worker holding `mine` connections, of all workers' `counts` (its own among
    them), holds more than the even share plus `slack`."""
    workers = len(counts)
    if workers < 2:
        return False
    return mine > math.ceil(sum(counts) / workers) + slack


class ConnectionShares:
    """This worker's slot in the shared file, and everyone's recent counts."""

    def __init__(
        self, path: Path, clock: Callable[[], float] = time.monotonic, pid: int | None = None
    ) -> None:
        self.clock = clock
        self.pid = pid or os.getpid()
        size = SLOTS * _SLOT.size
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._offset = self._claim_slot()

    def _claim_slot(self) -> int:
        """Our old slot, else an empty or stale one (a worker that died): writes are
        single 24-byte stores, and a rare clash costs one uneven second, not an error."""
        now = self.clock()
        free = None
        for i in range(SLOTS):
            pid, _, at = _SLOT.unpack_from(self._map, i * _SLOT.size)
            if pid == self.pid:
                return i * _SLOT.size
            if free is None and (pid == 0 or now - at > 10 * WINDOW_S):
                free = i * _SLOT.size
        offset = free if free is not None else (self.pid % SLOTS) * _SLOT.size
        _SLOT.pack_into(self._map, offset, self.pid, 0, now)
        return offset

    def publish(self, connections: int) -> None:
        _SLOT.pack_into(self._map, self._offset, self.pid, connections, self.clock())

    def counts(self) -> list[int]:
        """Connections of every worker that published in the last window (this one included)."""
        now = self.clock()
        return [n for pid, n, at in _SLOT.iter_unpack(self._map) if pid and now - at <= WINDOW_S]

    def close(self) -> None:
        _SLOT.pack_into(self._map, self._offset, 0, 0, 0.0)
        self._map.close()


class Balancer:
    """Which connection this worker should let go now (the decisions; no I/O of its own)."""

    def __init__(self, shares: ConnectionShares, clock: Callable[[], float] = time.monotonic):
        self.shares = shares
        self.clock = clock
        self._seen: dict[tuple, float] = {}  # client address → last request
        self._published_at = self._shed_at = -math.inf

    def should_close(self, client: tuple | None) -> bool:
        """Note a request from `client`; True when its connection is the one to close."""
        if client is None:
            return False
        now = self.clock()
        self._seen[client] = now
        if now - self._published_at < PUBLISH_EVERY_S:
            return False
        self._published_at = now
        self._seen = {c: at for c, at in self._seen.items() if now - at <= WINDOW_S}
        mine = len(self._seen)
        self.shares.publish(mine)
        if now - self._shed_at < SHED_EVERY_S or not over_share(mine, self.shares.counts()):
            return False
        self._shed_at = now
        del self._seen[client]
        self.shares.publish(mine - 1)
        return True


def balancer_for_this_process() -> Balancer | None:
    """A worker of `channelhub serve --workers N` balances with its siblings; a server of one
    process has no one to balance with."""
    if multiprocessing.parent_process() is None:
        return None
    return Balancer(ConnectionShares(shares_path(os.getppid())))


class BalanceMiddleware:
    """Adds `Connection: close` to the answer when the balancer lets this connection go."""

    def __init__(self, app: ASGIApp, balancer: Callable[[], Balancer | None]) -> None:
        self.app = app
        self._balancer = balancer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        balancer = self._balancer()
        if scope["type"] != "http" or balancer is None:
            await self.app(scope, receive, send)
            return
        if not balancer.should_close(scope.get("client")):
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
