"""The serving API as a real uvicorn subprocess: round trip, live promotion, clean shutdown."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Prediction
from db.repo.channels import promote_version
from tests.serving_helpers import (
    Hammer,
    count_feedback,
    free_port,
    png_of,
    predict,
    start_server,
)

pytest_plugins = ["tests.serving_fixtures"]


@pytest.mark.slow
def test_predict_and_feedback_round_trip(server, serving_registry, digits):
    key = serving_registry.keys["web"]
    with httpx.Client(timeout=10) as client:
        answer = predict(client, server, key, png_of(digits, 11))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["version_id"] == serving_registry.version_ids[0]
        before = count_feedback(serving_registry.database_url)
        feedback = client.post(
            f"{server}/v1/feedback",
            headers={"Authorization": f"Bearer {key}"},
            json={"prediction_id": body["prediction_id"], "rating": "up"},
        )
        assert feedback.status_code == 201, feedback.text
        assert count_feedback(serving_registry.database_url) == before + 1
        docs = client.get(f"{server}/openapi.json").json()
        assert "/v1/channels/{channel}/predict" in docs["paths"]


@pytest.mark.slow
def test_promotion_is_picked_up_live_without_failed_requests(server, serving_registry, digits):
    v1, v2 = serving_registry.version_ids
    with Hammer(server, serving_registry.keys["web"], png_of(digits, 2)) as hammer:
        time.sleep(0.5)
        with session_scope(serving_registry.database_url) as s:
            promote_version(session=s, slug="web", version_id=v2)
        promoted_at = time.monotonic()
        deadline = promoted_at + 5
        while time.monotonic() < deadline:
            with hammer.lock:
                if any(b["version_id"] == v2 for _, b in hammer.answers):
                    break
            time.sleep(0.05)
        time.sleep(0.5)
    assert hammer.failures == []
    first_v2 = min(t for t, b in hammer.answers if b["version_id"] == v2)
    assert first_v2 - promoted_at < 5
    assert any(b["version_id"] == v1 for t, b in hammer.answers if t < promoted_at)
    assert all(b["version_id"] == v2 for t, b in hammer.answers if t > first_v2 + 0.1)
    with session_scope(serving_registry.database_url) as s:
        promote_version(session=s, slug="web", version_id=v1)


def stored_ids(database_url: str) -> set[str]:
    with session_scope(database_url) as s:
        return set(s.scalars(select(Prediction.id)))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_keeps_every_answered_prediction(serving_registry, digits, signum):
    port = free_port()
    proc = start_server(serving_registry, port)
    base = f"http://127.0.0.1:{port}"
    with Hammer(base, serving_registry.keys["web"], png_of(digits, 4), threads=6) as hammer:
        time.sleep(1.5)
        proc.send_signal(signum)
        # uvicorn shuts down (lifespan included), then re-raises the signal it caught
        assert proc.wait(60) in (0, -signum)
    answered = {b["prediction_id"] for _, b in hammer.answers}
    assert len(answered) > 50
    assert "Traceback" not in (serving_registry.home / f"server-{port}.log").read_text()
    assert answered <= stored_ids(serving_registry.database_url)
