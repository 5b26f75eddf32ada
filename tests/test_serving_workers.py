"""`channelhub serve --workers 2`: two processes share the port and stay one API — a promotion
reaches both within the refresh interval, a canary's share holds across them, a clean stop keeps
every answered prediction once, and a SIGKILL under load loses nothing that was acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from db.engine import session_scope
from db.models import Prediction
from db.repo.channels import promote_version, set_candidate
from tests.serving_helpers import REPO_ROOT, Hammer, free_port, png_of, predict, start_server

pytest_plugins = ["tests.serving_fixtures"]

REFRESH_S = 0.5  # start_server's CHANNELHUB_REFRESH_SECONDS


@pytest.fixture(scope="module")
def two_workers(serving_registry):
    port = free_port()
    proc = start_server(serving_registry, port, workers=2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(60)


def answers_by_worker(base: str, key: str, image: bytes, per_connection: int, connections: int):
    """(worker pid, answer) pairs over fresh connections: each connection is one worker's."""
    seen = []
    for _ in range(connections):
        with httpx.Client(timeout=10) as client:
            pid = client.get(f"{base}/healthz").json()["worker"]
            for _ in range(per_connection):
                answer = predict(client, base, key, image)
                assert answer.status_code == 200, answer.text
                seen.append((pid, answer.json()))
    return seen


def both_workers(base: str, key: str, image: bytes, per_connection: int = 1, tries: int = 60):
    """Answers until both workers have answered at least once (a bounded number of tries)."""
    seen: list = []
    for _ in range(tries):
        seen += answers_by_worker(base, key, image, per_connection, 1)
        if len({pid for pid, _ in seen}) == 2:
            return seen
    pytest.fail(f"one worker answered all {len(seen)} connections")


@pytest.mark.slow
def test_a_promotion_reaches_every_worker_within_the_refresh_interval(
    two_workers, serving_registry, digits
):
    url, (v1, v2) = serving_registry.database_url, serving_registry.version_ids
    key, image = serving_registry.keys["web"], png_of(digits, 5)
    assert {b["version_id"] for _, b in both_workers(two_workers, key, image)} == {v1}
    with session_scope(url) as s:
        promote_version(session=s, slug="web", version_id=v2)
    try:
        time.sleep(2 * REFRESH_S + 0.5)  # a refresh, one that may have just begun, some slack
        seen = both_workers(two_workers, key, image)
        assert {b["version_id"] for _, b in seen} == {v2}
    finally:
        with session_scope(url) as s:
            promote_version(session=s, slug="web", version_id=v1)


@pytest.mark.slow
def test_a_canary_share_holds_across_workers(two_workers, serving_registry, digits):
    url, v2 = serving_registry.database_url, serving_registry.version_ids[1]
    with session_scope(url) as s:
        set_candidate(session=s, slug="web", version_id=v2, traffic=0.3)
    try:
        time.sleep(2 * REFRESH_S + 0.5)
        seen = answers_by_worker(two_workers, serving_registry.keys["web"], png_of(digits), 40, 16)
    finally:
        with session_scope(url) as s:
            set_candidate(session=s, slug="web", version_id=None, traffic=0.0)
    share = sum(b["arm"] == "candidate" for _, b in seen) / len(seen)
    assert abs(share - 0.3) <= 0.07, share
    per_worker = Counter(pid for pid, _ in seen)
    for pid, count in per_worker.items():
        if count >= 120:  # enough answers from this worker to judge its own share
            mine = sum(b["arm"] == "candidate" for p, b in seen if p == pid) / count
            assert abs(mine - 0.3) <= 0.13, (pid, count, mine)


def stored(database_url: str, ids: set[str]) -> dict[str, int]:
    """How many rows each of `ids` has."""
    with session_scope(database_url) as s:
        rows = s.execute(
            select(Prediction.id, func.count())
            .where(Prediction.id.in_(list(ids)))
            .group_by(Prediction.id)
        )
        return dict(rows.all())


@pytest.mark.slow
def test_a_clean_stop_of_two_workers_keeps_every_answer_once(serving_registry, digits):
    port = free_port()
    proc = start_server(serving_registry, port, workers=2)
    base = f"http://127.0.0.1:{port}"
    with Hammer(base, serving_registry.keys["web"], png_of(digits, 6), threads=6) as hammer:
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    answered = [b["prediction_id"] for _, b in hammer.answers]
    assert len(answered) > 50 and len(set(answered)) == len(answered)
    rows = stored(serving_registry.database_url, set(answered))
    assert set(rows) == set(answered) and set(rows.values()) == {1}
    assert "Traceback" not in (serving_registry.home / f"server-{port}.log").read_text()


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_prediction(two_workers, serving_registry, digits):
    port = free_port()
    cmd = [sys.executable, "-m", "core.serving.api", "--port", str(port), "--workers", "2",
           "--log-level", "warning"]  # fmt: skip
    env = {**serving_registry.env(), "CHANNELHUB_REFRESH_SECONDS": "0.5"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        key = serving_registry.keys["web"]
        with Hammer(base, key, png_of(digits, 7), threads=6) as hammer:
            time.sleep(2.0)
            os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and both workers, no shutdown
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    answered = {b["prediction_id"] for _, b in hammer.answers}
    assert len(answered) > 50
    assert set(stored(serving_registry.database_url, answered)) == answered
    some = next(iter(answered))  # the server that is up takes feedback on them at once
    feedback = httpx.post(f"{two_workers}/v1/feedback", headers={"X-API-Key": key},
                          json={"prediction_id": some, "rating": "up"}, timeout=10)  # fmt: skip
    assert feedback.status_code == 201, feedback.text


@pytest.mark.slow
def test_keep_alive_connections_end_up_evenly_shared(two_workers, serving_registry, digits):
    """Twelve busy keep-alive clients: a worker holding more than its share plus one answers
    with `Connection: close` until the shares are even; every request is still answered."""
    import threading

    key, image = serving_registry.keys["web"], png_of(digits, 3)
    clients = [httpx.Client(timeout=10) for _ in range(12)]
    statuses: Counter = Counter()
    closes = []
    stop = time.monotonic() + 3.0

    def busy(client: httpx.Client) -> None:
        while time.monotonic() < stop:
            answer = predict(client, two_workers, key, image)
            statuses[answer.status_code] += 1
            if answer.headers.get("connection") == "close":
                closes.append(1)

    threads = [threading.Thread(target=busy, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Where each connection is now (a closed one reconnects on its next request).
    pids = Counter(c.get(f"{two_workers}/healthz").json()["worker"] for c in clients)
    for c in clients:
        c.close()
    assert set(statuses) == {200}, statuses
    assert len(pids) == 2 and max(pids.values()) <= 6 + 2, (pids, len(closes))
