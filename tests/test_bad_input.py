"""Bad input found by hand, each refused with a 4xx that names the problem and stores nothing:
deeply nested JSON, image formats other than PNG and JPEG, a small file declaring a huge image,
repeated feedback, `false` as a class, and control characters in free text."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from core.serving.api import create_app
from core.serving.request_images import INLINE_DECODE_BYTES
from core.serving.settings import ServingSettings
from db.engine import session_scope
from db.errors import ConflictError, RegistryError
from db.models import Feedback
from db.repo.channels import ChannelSpec, create_channel
from db.repo.feedback import AnnotationInput, FeedbackInput, add_feedback, annotate
from db.repo.predictions import PredictionRecord, insert_predictions, new_prediction_id
from db.text import forbidden_character
from tests.registry_helpers import add_dataset, add_model_with_version
from tests.serving_helpers import count_feedback, count_rows, png_of

pytest_plugins = ["tests.serving_fixtures"]

PREDICT = "/v1/channels/web/predict"
DEEP = 100_000


@pytest.fixture(scope="module")
def client(serving_registry):
    app = create_app(serving_registry.database_url, settings=ServingSettings(refresh_seconds=0.2))
    with TestClient(app) as test_client:
        yield test_client


def stored(client: TestClient, registry) -> tuple[int, int]:
    """(predictions, feedback) rows, once every answered prediction is written."""
    assert client.app.state.services.predictions.flush(10)
    return count_rows(registry.database_url), count_feedback(registry.database_url)


def predict(client, registry, digits, index: int = 0) -> str:
    response = client.post(
        PREDICT, content=png_of(digits, index),
        headers={"X-API-Key": registry.keys["web"], "Content-Type": "image/png"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()["prediction_id"]


def post_feedback(client, registry, **body):
    return client.post("/v1/feedback", json=body, headers={"X-API-Key": registry.keys["web"]})


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_json_nested_100000_deep_is_a_400(client, serving_registry):
    before = stored(client, serving_registry)
    key = {"X-API-Key": serving_registry.keys["web"], "Content-Type": "application/json"}
    for body in ("[" * DEEP + "]" * DEEP, '{"pixels":' + "[" * DEEP + "]" * DEEP + "}"):
        response = client.post(PREDICT, content=body, headers=key)
        assert response.status_code == 400, response.text[:300]
        assert "nested too deep" in response.json()["detail"]
    deep_feedback = '{"prediction_id":' + "[" * DEEP + "]" * DEEP + "}"
    response = client.post("/v1/feedback", content=deep_feedback, headers=key)
    assert response.status_code == 400, response.text[:300]
    assert stored(client, serving_registry) == before


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP", "BMP", "ICO", "PPM"])
def test_only_png_and_jpeg_are_accepted(client, serving_registry, digits, fmt):
    before = stored(client, serving_registry)
    data = encoded(Image.fromarray(digits.x[0, :, :, 0]), fmt)
    key = serving_registry.keys["web"]
    answers = [  # the format Pillow detects counts, not the name or the content type
        client.post(PREDICT, files={"file": ("x.png", data, "image/png")},
                    headers={"X-API-Key": key}),
        client.post(PREDICT, content=data, headers={"X-API-Key": key,
                                                    "Content-Type": "image/png"}),
        client.post(PREDICT, json={"image_base64": base64.b64encode(data).decode()},
                    headers={"X-API-Key": key}),
    ]  # fmt: skip
    for response in answers:
        assert response.status_code == 415, response.text
        assert response.json()["detail"] == f"{fmt} images are not accepted: send PNG or JPEG"
    assert stored(client, serving_registry) == before


def test_png_and_jpeg_still_answer(client, serving_registry, digits):
    key = {"X-API-Key": serving_registry.keys["web"], "Content-Type": "image/jpeg"}
    image = Image.fromarray(digits.x[1, :, :, 0])
    for fmt in ("PNG", "JPEG"):
        response = client.post(PREDICT, content=encoded(image, fmt), headers=key)
        assert response.status_code == 200, response.text


def test_a_truncated_header_is_corrupt_not_a_format(client, serving_registry):
    key = {"X-API-Key": serving_registry.keys["web"], "Content-Type": "image/png"}
    response = client.post(PREDICT, content=b"\x89PNG\r\n\x1a\n\x00\x00", headers=key)
    assert response.status_code == 400 and "corrupt" in response.json()["detail"]


def test_declared_size_is_refused_before_decoding(client, serving_registry):
    """A PNG whose header declares 6000x6000 but whose pixel data is cut off: the refusal is
    413 (the declared size) rather than 400 (the missing data), so nothing was decoded."""
    data = encoded(Image.new("1", (6000, 6000)), "PNG")
    header_only = data[: data.index(b"IDAT") + 20]
    key = {"X-API-Key": serving_registry.keys["web"], "Content-Type": "image/png"}
    response = client.post(PREDICT, content=header_only, headers=key)
    assert response.status_code == 413, response.text
    assert "6000x6000" in response.json()["detail"]


def test_a_small_file_declaring_25_megapixels_does_not_stall_the_loop(client, serving_registry):
    """A 24 KB PNG of 5000x5000 takes about a tenth of a second (more on a busy machine) to
    decode and fit: off the event loop, a ticker on the same loop keeps ticking while it does."""
    data = encoded(Image.new("L", (5000, 5000)), "PNG")
    assert len(data) < INLINE_DECODE_BYTES  # small enough to have been decoded inline
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = client.portal.start_task_soon(ticker)
    time.sleep(0.05)
    started = time.perf_counter()
    key = {"X-API-Key": serving_registry.keys["web"], "Content-Type": "image/png"}
    response = client.post(PREDICT, content=data, headers=key)
    took = time.perf_counter() - started
    running = False
    ticking.result(5)
    assert response.status_code == 200, response.text
    assert took > 0.05  # slow enough to matter: ten of the ticker's 5 ms sleeps
    assert max(gaps) < took / 2, (max(gaps), took)


def test_one_feedback_per_prediction(client, serving_registry, digits):
    prediction_id = predict(client, serving_registry, digits, 2)
    first = post_feedback(client, serving_registry, prediction_id=prediction_id, rating="up")
    assert first.status_code == 201, first.text
    before = stored(client, serving_registry)
    for rating in ("up", "down"):
        again = post_feedback(client, serving_registry, prediction_id=prediction_id, rating=rating)
        assert again.status_code == 409, again.text
        assert "already has its feedback" in again.json()["detail"]
    assert stored(client, serving_registry) == before


@pytest.mark.parametrize("claimed", [False, True, "3", 3.0, [3]])
def test_claimed_class_must_be_an_integer(client, serving_registry, digits, claimed):
    prediction_id = predict(client, serving_registry, digits, 3)
    before = stored(client, serving_registry)
    response = post_feedback(
        client, serving_registry, prediction_id=prediction_id, rating="down",
        claimed_class=claimed,
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert "claimed_class" in response.json()["detail"]
    assert stored(client, serving_registry) == before


@pytest.mark.parametrize(
    "bad, named",
    [
        ("\x00", "U+0000"),
        ("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("\u2066", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("\x1b[31m", "U+001B"),
        ("\x85", "U+0085"),
        ("\x7f", "U+007F"),
        ("\ud800", "valid string"),
    ],
)
def test_control_characters_are_refused(client, serving_registry, digits, bad, named):
    prediction_id = predict(client, serving_registry, digits, 4)
    before = stored(client, serving_registry)
    body = {"prediction_id": prediction_id, "rating": "down", "comment": f"ok{bad}ok"}
    response = client.post(
        "/v1/feedback", content=json.dumps(body),  # ASCII, with escapes such as \u0000
        headers={"X-API-Key": serving_registry.keys["web"], "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("comment") and named in response.json()["detail"]
    assert stored(client, serving_registry) == before


def test_newlines_and_tabs_are_text(client, serving_registry, digits):
    prediction_id = predict(client, serving_registry, digits, 5)
    comment = "line one\r\n\tline two"
    response = post_feedback(
        client, serving_registry, prediction_id=prediction_id, rating="up", comment=comment
    )
    assert response.status_code == 201, response.text
    with session_scope(serving_registry.database_url) as s:
        assert s.get(Feedback, response.json()["feedback_id"]).comment == "line one\n\tline two"


@pytest.mark.both_databases
def test_the_registry_refuses_the_same_input(registry):
    """The action layer's door (the CLI and dashboard use it too) applies the same rules."""
    with session_scope() as s:
        _, version = add_model_with_version(s, add_dataset(s))
        web, _ = create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
        pid = new_prediction_id()
        record = PredictionRecord(
            pid, web.id, version.id, "production", 3, 0.8, [0.1] * 10, 2.0, None
        )
        insert_predictions(session=s, records=[record])
    refusals = [
        (RegistryError, "must be a class index", dict(rating="down", claimed_class=False)),
        (RegistryError, "U\\+202E", dict(rating="up", comment="look \u202e")),
    ]
    for error, message, fields in refusals:
        with pytest.raises(error, match=message), session_scope() as s:
            add_feedback(
                session=s, feedback=FeedbackInput(prediction_id=pid, channel_id=web.id, **fields)
            )
    with session_scope() as s:
        info = add_feedback(
            session=s, feedback=FeedbackInput(prediction_id=pid, channel_id=web.id, rating="up")
        )
    verdicts = [
        (dict(note="fine\x00"), "note contains a control character"),
        (dict(tags=["x\u2067"]), "tag contains a bidirectional override"),
    ]
    for fields, message in verdicts:
        with pytest.raises(RegistryError, match=message), session_scope() as s:
            annotation = AnnotationInput(verdict="confirmed", **fields)
            annotate(session=s, feedback_id=info.id, author="ann", annotation=annotation)
    with pytest.raises(ConflictError, match="already has its feedback"), session_scope() as s:
        add_feedback(
            session=s, feedback=FeedbackInput(prediction_id=pid, channel_id=web.id, rating="down")
        )
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 1


def test_forbidden_character_names_the_first_one():
    assert forbidden_character("plain text,\n\ttabbed; ünïcödé ✓ 日本") is None
    assert forbidden_character("ab\x00\x1b") == "a control character (U+0000) at position 2"


def test_every_refusal_is_documented_as_the_one_error_model():
    spec = create_app("sqlite://", settings=ServingSettings()).openapi()
    expected = {
        ("post", "/v1/channels/{channel}/predict"): {400, 401, 404, 413, 415, 422, 429, 503},
        ("post", "/v1/feedback"): {400, 401, 404, 409, 413, 422, 429},
    }
    for (method, path), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert {int(s) for s in responses if int(s) >= 400} == statuses
        for status in statuses:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, status)
    assert spec["components"]["schemas"]["ErrorOut"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.both_databases
def test_racing_feedback_on_one_prediction_stores_one(registry):
    """Eight writers at once on each of five predictions: one feedback each, the others 409."""
    with session_scope() as s:
        _, version = add_model_with_version(s, add_dataset(s))
        web, _ = create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
        pids = [new_prediction_id() for _ in range(5)]
        records = [PredictionRecord(p, web.id, version.id, "production", 3, 0.8, [0.1] * 10, 2.0,
                                    None) for p in pids]  # fmt: skip
        insert_predictions(session=s, records=records)

    def give(pid: str, start: threading.Barrier) -> str:
        start.wait()
        try:
            with session_scope() as s:
                add_feedback(
                    session=s,
                    feedback=FeedbackInput(prediction_id=pid, channel_id=web.id, rating="up"),
                )
            return "stored"
        except ConflictError:
            return "refused"

    for pid in pids:
        start = threading.Barrier(8)
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(give, [pid] * 8, [start] * 8))
        assert sorted(outcomes) == ["refused"] * 7 + ["stored"], outcomes
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Feedback)) == 5
