"""The Overview page shows a serving API whose prediction log cannot write, as that API's real
`/readyz` says over HTTP: an error with the database's words when it cannot write, a note when
the API does not answer, nothing when it is healthy."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from streamlit.testing.v1 import AppTest

from core.ops.launcher import api_url
from core.serving.app import create_app
from core.serving.prediction_log import LogRefused, PredictionLog
from core.serving.settings import ServingSettings
from dashboard.ui import md_text
from db.models import utcnow
from db.repo.predictions import PredictionRecord, new_prediction_id
from db.settings import artifact_dir
from tests.dashboard_fixtures import FilledRegistry, filled_registry_fixture  # noqa: F401
from tests.page_helpers import APP, check_page, fresh_caches, sign_in_as, texts  # noqa: F401
from tests.serving_helpers import free_port

CANNOT_WRITE = "cannot store predictions"


@contextmanager
def serving_api(database_url: str) -> Iterator[tuple[str, FastAPI]]:
    """The real serving app behind uvicorn on a loopback port, in a thread of this process (so
    the test can reach its services); yields its base URL and the app."""
    app = create_app(database_url, settings=ServingSettings(refresh_seconds=0.5))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="serving-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(60)


def read_only_url(database_url: str) -> str:
    """The same SQLite file opened read-only (root ignores file modes; SQLite's mode does not)."""
    path = database_url.removeprefix("sqlite:///")
    return f"sqlite:///file:{path}?mode=ro&uri=true"


@contextmanager
def a_writer_that_cannot_write(app: FastAPI, reg: FilledRegistry) -> Iterator[None]:
    """The API's prediction log on a read-only database, after one prediction it refused."""
    services = app.state.services
    healthy = services.predictions
    services.predictions = PredictionLog(read_only_url(reg.url), artifact_dir())
    record = PredictionRecord(
        id=new_prediction_id(), channel_id=reg.channel_ids["web"], version_id=reg.version_ids[0],
        arm="production", predicted_class=1, confidence=0.9, probabilities=[0.1, 0.9],
        latency_ms=1.0, input_path=None, created_at=utcnow(),
    )  # fmt: skip
    try:
        with pytest.raises(LogRefused):
            services.predictions.submit(record, None).result(60)
        yield
    finally:
        services.predictions.close()
        services.predictions = healthy


def overview(*, expected: tuple[str, ...] = ()) -> AppTest:
    """The Overview (the default page) of a signed-in admin, checked like every page test."""
    at = sign_in_as(AppTest.from_file(APP, default_timeout=60), "olga")
    at.run()
    return check_page(at, expected=expected)


def test_overview_shows_a_writer_that_cannot_write(
    filled_registry: FilledRegistry, monkeypatch: pytest.MonkeyPatch
):
    with serving_api(filled_registry.url) as (url, app):
        monkeypatch.setenv("CHANNELHUB_API_URL", url + "/")
        with a_writer_that_cannot_write(app, filled_registry):
            said = httpx.get(f"{url}/readyz", timeout=10).json()["prediction_log"]
            at = overview(expected=(CANNOT_WRITE,))
    assert not said["ok"] and said["error"]
    shown = next(e.value for e in at.error if CANNOT_WRITE in e.value)
    assert md_text(url) in shown and "0 row(s) waiting, 1 refused so far" in shown
    assert [c.value for c in at.code] == [said["error"]]  # the database's words, as text
    assert "Web app" in texts(at)  # the channels are still shown below it


def test_a_healthy_writer_shows_nothing(
    filled_registry: FilledRegistry, monkeypatch: pytest.MonkeyPatch
):
    with serving_api(filled_registry.url) as (url, _):
        monkeypatch.setenv("CHANNELHUB_API_URL", url)
        at = overview()  # fails on any error element
    assert "Serving API" not in texts(at)
    assert not at.code


def test_an_api_that_does_not_answer_is_a_note_not_an_error(
    filled_registry: FilledRegistry, monkeypatch: pytest.MonkeyPatch
):
    silent = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CHANNELHUB_API_URL", f"{silent}, ftp://example")
    at = overview()  # fails on any error element
    notes = [c.value for c in at.caption if "Serving API" in c.value]
    assert len(notes) == 2, notes
    assert md_text(silent) in notes[0] and "did not answer" in notes[0]
    assert md_text("ftp://example") in notes[1] and md_text("not an http(s) URL") in notes[1]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://[::1]:8000"),
        ("dash.example", "http://dash.example:8000"),
    ],
)
def test_up_points_the_dashboard_at_its_own_api(host: str, url: str):
    assert api_url(host, 8000) == url
