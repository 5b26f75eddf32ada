"""The traffic simulator against a live serving API fills predictions and feedback."""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.ops.simulator import (
    SIMULATED_HEADERS,
    add_simulate_arguments,
    check_loopback,
    drifted_images,
    feedback_for,
    run_simulate,
    simulate,
)
from core.serving.api import create_app
from core.serving.settings import ServingSettings
from db.engine import session_scope
from db.models import Feedback
from db.repo.predictions import get_prediction
from tests.serving_helpers import count_feedback, count_rows, png_of

pytest_plugins = ["tests.serving_fixtures"]


@pytest.mark.slow
def test_simulator_fills_predictions_and_feedback(server, serving_registry):
    url = serving_registry.database_url
    predictions, feedback = count_rows(url), count_feedback(url)
    summary = simulate(server, "web", serving_registry.keys["web"], rate=40, duration=3,
                       seed=1, feedback_share=0.5, database_url=url)  # fmt: skip
    assert summary["sent"] == 120 and summary["failed"] == 0
    assert summary["answered"] == 120 and summary["arms"] == {"production": 120}
    assert summary["live_accuracy"] > 0.8
    assert summary["feedback_sent"] > 30 and summary["feedback_failed"] == 0
    assert 2.5 < summary["duration_s"] < 10
    # the log is written in batches: wait for the API's next flush
    expected = predictions + summary["answered"]
    deadline = time.monotonic() + 5
    while count_rows(url) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count_rows(url) == expected
    assert count_feedback(url) == feedback + summary["feedback_sent"]
    with session_scope(url) as s:
        ratings = list(s.scalars(select(Feedback.rating)))
    assert {"up", "down"} <= set(ratings)


@pytest.mark.slow
def test_run_simulate_reads_the_key_from_the_environment(
    server, serving_registry, monkeypatch, capsys
):
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(["--channel", "mobile", "--rate", "10", "--duration", "1",
                              "--url", server])  # fmt: skip
    monkeypatch.delenv("CHANNELHUB_API_KEY_MOBILE", raising=False)
    assert run_simulate(args) == 2
    monkeypatch.setenv("CHANNELHUB_API_KEY_MOBILE", serving_registry.keys["mobile"])
    assert run_simulate(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["answered"] == 10


def test_feedback_is_realistic():
    rng = random.Random(0)
    wrong = [feedback_for(rng, 3, 5, 10, 0.2) for _ in range(2000)]
    right = [feedback_for(rng, 5, 5, 10, 0.2) for _ in range(2000)]
    wrong_sent = [f for f in wrong if f]
    right_sent = [f for f in right if f]
    assert len(wrong_sent) > 2 * len(right_sent)  # users complain more than they praise
    assert all(f["rating"] == "down" for f in wrong_sent)
    corrected = [f for f in wrong_sent if f["claimed_class"] is not None]
    assert 0.7 < len(corrected) / len(wrong_sent) < 0.9
    assert all(f["claimed_class"] == 5 for f in corrected)
    noise = [f for f in right_sent if f["rating"] == "down"]
    assert 0 < len(noise) < 0.2 * len(right_sent)
    assert all(f["claimed_class"] != 5 for f in noise)


def test_simulator_only_talks_to_loopback():
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("http://example.com")
    with pytest.raises(ValueError, match="rate"):
        simulate("http://127.0.0.1:1", "web", "k", rate=10_000, duration=1)


def test_drifted_images_are_inverted_or_noisy():
    rng = np.random.default_rng(0)
    x = np.random.default_rng(1).integers(0, 256, (400, 8, 8, 1), dtype=np.uint8)
    out = drifted_images(x, rng, inverted_share=0.6)
    inverted = np.all(out == 255 - x, axis=(1, 2, 3))
    assert out.shape == x.shape and out.dtype == np.uint8
    assert 0.5 < inverted.mean() < 0.7
    assert not np.any(np.all(out[~inverted] == x[~inverted], axis=(1, 2, 3)))


def test_predict_request_with_the_simulated_header_is_stored_as_simulated(serving_registry, digits):
    app = create_app(serving_registry.database_url, settings=ServingSettings(refresh_seconds=0.2))
    key = serving_registry.keys["web"]
    with TestClient(app) as client:
        answers = {}
        for label, extra in (("simulated", SIMULATED_HEADERS), ("live", {})):
            files = {"file": ("x.png", png_of(digits, 1), "image/png")}
            response = client.post("/v1/channels/web/predict", files=files,
                                   headers={"X-API-Key": key, **extra})  # fmt: skip
            assert response.status_code == 200, response.text
            answers[label] = response.json()["prediction_id"]
        assert client.app.state.services.predictions.flush(10)
    with session_scope(serving_registry.database_url) as s:
        stored = {k: get_prediction(session=s, prediction_id=v) for k, v in answers.items()}
    assert stored["simulated"].simulated is True
    assert stored["live"].simulated is False


@pytest.mark.slow
def test_drift_scenario_sends_drifted_images_and_complaints(server, serving_registry):
    url = serving_registry.database_url
    calm = simulate(server, "mobile", serving_registry.keys["mobile"], rate=40, duration=2,
                    seed=2, feedback_share=0.3, database_url=url)  # fmt: skip
    drift = simulate(server, "mobile", serving_registry.keys["mobile"], rate=40, duration=2,
                     seed=2, feedback_share=0.3, database_url=url, scenario="drift")  # fmt: skip
    assert drift["failed"] == 0 and drift["answered"] == 80
    assert drift["live_accuracy"] < calm["live_accuracy"] - 0.3
    assert drift["feedback_sent"] > calm["feedback_sent"]
    with pytest.raises(ValueError, match="scenario"):
        simulate(server, "mobile", "k", rate=1, duration=1, scenario="storm")
