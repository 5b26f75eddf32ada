"""The serving workers keep even shares of the keep-alive connections: a worker over its share
answers with `Connection: close`, one connection at a time, and stops once even."""

from __future__ import annotations

import asyncio

import pytest

from core.serving.balance import (
    SHED_EVERY_S,
    WINDOW_S,
    BalanceMiddleware,
    Balancer,
    ConnectionShares,
    over_share,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("mine", "counts", "expected"),
    [
        (10, [10, 2], True),  # even share 6, slack 1
        (7, [7, 5], False),
        (8, [8, 4], True),
        (1, [1], False),  # one worker: no one to hand over to
        (1, [1, 0], False),  # a lone client stays
        (2, [2, 0], False),
    ],
)
def test_over_share(mine, counts, expected):
    assert over_share(mine, counts) is expected


def test_workers_see_each_others_counts_and_a_silent_one_drops_out(tmp_path):
    clock = Clock()
    a = ConnectionShares(tmp_path / "x.conns", clock, pid=101)
    b = ConnectionShares(tmp_path / "x.conns", clock, pid=102)
    a.publish(7)
    b.publish(3)
    assert sorted(a.counts()) == sorted(b.counts()) == [3, 7]
    clock.now += WINDOW_S / 2
    a.publish(6)
    clock.now += WINDOW_S * 0.75  # b has not published for more than the window
    assert a.counts() == [6]
    b.close()
    c = ConnectionShares(tmp_path / "x.conns", clock, pid=103)  # takes the freed slot
    c.publish(1)
    assert sorted(a.counts()) == [1, 6]


def test_a_worker_over_its_share_lets_connections_go_until_even(tmp_path):
    clock = Clock()
    other = ConnectionShares(tmp_path / "x.conns", clock, pid=2)
    balancer = Balancer(ConnectionShares(tmp_path / "x.conns", clock, pid=1), clock)
    mine = [("10.0.0.1", port) for port in range(10)]
    theirs = 2
    moved = 0
    for _ in range(2000):  # round-robin requests, 1 ms apart, for 2 s
        clock.now += 0.001
        other.publish(theirs)  # a moved client's next request lands there at once
        client = mine[int(clock.now * 1000) % len(mine)]
        if balancer.should_close(client):
            mine.remove(client)
            theirs += 1
            moved += 1
    assert moved == 3  # 10 against 2: even share 6, slack 1 → it keeps 7
    times = []
    clock2 = Clock()
    other2 = ConnectionShares(tmp_path / "y.conns", clock2, pid=2)
    balancer2 = Balancer(ConnectionShares(tmp_path / "y.conns", clock2, pid=1), clock2)
    other2.publish(0)
    for i in range(40):
        clock2.now += 0.001
        other2.publish(0)
        if balancer2.should_close(("c", i % 20)):
            times.append(clock2.now)
    assert times and all(b - a >= SHED_EVERY_S for a, b in zip(times, times[1:], strict=False))


def test_the_middleware_closes_only_the_connection_it_is_told_to(tmp_path):
    clock = Clock()
    other = ConnectionShares(tmp_path / "x.conns", clock, pid=2)
    balancer = Balancer(ConnectionShares(tmp_path / "x.conns", clock, pid=1), clock)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"connection", b"keep-alive"), (b"x-a", b"1")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = BalanceMiddleware(app, balancer=lambda: balancer)

    def answer(client) -> list:
        sent = []

        async def send(message):
            sent.append(message)

        asyncio.run(middleware({"type": "http", "client": client}, None, send))
        return sent[0]["headers"]

    other.publish(0)
    headers = [answer(("c", i % 6)) for i in range(6)]  # 6 clients, the other worker none
    clock.now += 0.02
    other.publish(0)
    closing = answer(("c", 0))
    assert all((b"connection", b"close") not in h for h in headers[:1])
    assert closing == [(b"x-a", b"1"), (b"connection", b"close")]
    assert (b"connection", b"close") not in answer(None)  # no client address: nothing to do
