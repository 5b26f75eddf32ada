"""Serving API through FastAPI's test client against a real SQLite registry."""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from PIL import Image

from core.actions.base import PermissionDenied
from core.ml.images import decode_image
from core.serving.api import create_app
from core.serving.deps import SessionDep
from core.serving.errors import STATUS_BY_KIND
from core.serving.settings import ServingSettings
from db.engine import session_scope
from db.errors import RegistryError
from db.repo.audit import list_events
from db.repo.channels import promote_version, rotate_api_key, set_candidate, set_channel_status
from db.repo.feedback import FeedbackInput, add_feedback
from db.repo.models import create_model, get_version, list_models
from db.repo.predictions import get_prediction
from db.settings import artifact_dir
from tests.serving_helpers import count_feedback, count_rows, png_of, sample_pixels, wait_for

pytest_plugins = ["tests.serving_fixtures"]

PREDICT = "/v1/channels/{}/predict"


@pytest.fixture(scope="module")
def client(serving_registry):
    app = create_app(serving_registry.database_url, settings=ServingSettings(refresh_seconds=0.2))
    with TestClient(app) as test_client:
        yield test_client


def flushed_count(client, registry) -> int:
    assert client.app.state.services.predictions.flush(10)
    return count_rows(registry.database_url)


def post_png(client, key, data, slug="web", filename="x.png", content_type="image/png"):
    files = {"file": (filename, data, content_type)}
    return client.post(PREDICT.format(slug), files=files, headers={"X-API-Key": key})


def test_predict_upload_answers_and_logs_the_input(client, serving_registry, digits):
    before = flushed_count(client, serving_registry)
    response = post_png(client, serving_registry.keys["web"], png_of(digits, 3))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class_name"] == digits.class_names[body["class_index"]]
    assert body["arm"] == "production" and body["version"] == 1
    assert body["version_id"] == serving_registry.version_ids[0]
    assert body["model"] == "digits-mlp"
    assert set(body["probabilities"]) == set(digits.class_names)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert body["confidence"] == max(body["probabilities"].values())
    assert flushed_count(client, serving_registry) == before + 1
    with session_scope(serving_registry.database_url) as s:
        row = get_prediction(session=s, prediction_id=body["prediction_id"])
    assert row.predicted_class == body["class_index"] and row.latency_ms > 0
    assert row.input_path.startswith("inputs/web/")
    stored = decode_image((artifact_dir() / row.input_path).read_bytes())
    assert np.array_equal(stored, digits.x[3])


def _stored_input(serving_registry, prediction_id: str) -> bytes:
    with session_scope(serving_registry.database_url) as s:
        row = get_prediction(session=s, prediction_id=prediction_id)
    return (artifact_dir() / row.input_path).read_bytes()


def test_an_upload_that_fits_is_stored_as_sent_and_any_other_is_stored_as_the_model_saw_it(
    client, serving_registry, digits
):
    key, image = serving_registry.keys["web"], digits.x[4]
    buffer = io.BytesIO()  # not what the log's own encoder would write for these pixels
    Image.fromarray(image[:, :, 0]).save(buffer, format="PNG", compress_level=0)
    sent = buffer.getvalue()
    assert sent != png_of(digits, 4)
    as_sent = post_png(client, key, sent).json()["prediction_id"]
    assert _stored_input(serving_registry, as_sent) == sent  # no second encoding
    buffer = io.BytesIO()  # twice the size and with colour: resized and made grey first
    Image.fromarray(np.repeat(np.repeat(image, 2, 0), 2, 1)[:, :, 0]).convert("RGBA").save(
        buffer, format="PNG"
    )
    refitted = post_png(client, key, buffer.getvalue()).json()["prediction_id"]
    stored = _stored_input(serving_registry, refitted)
    assert stored != buffer.getvalue()
    assert decode_image(stored).shape == image.shape


def test_predict_json_base64_pixels_and_bearer(client, serving_registry, digits):
    key = serving_registry.keys["web"]
    encoded = base64.b64encode(png_of(digits, 5)).decode()
    by_b64 = client.post(PREDICT.format("web"), json={"image_base64": encoded},
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    by_pixels = client.post(PREDICT.format("web"), json={"pixels": sample_pixels(digits, 5)},
                            headers={"X-API-Key": key})  # fmt: skip
    assert by_b64.status_code == by_pixels.status_code == 200
    assert by_b64.json()["probabilities"] == by_pixels.json()["probabilities"]


def test_predictions_are_mostly_right(client, serving_registry, digits):
    key = serving_registry.keys["web"]
    right = sum(
        post_png(client, key, png_of(digits, i)).json()["class_index"] == digits.y[i]
        for i in range(40)
    )
    assert right >= 30


def _big_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_UPLOADS = [
    ("not-an-image", lambda d: b"hello, this is text", 415, "not an image"),
    ("truncated-png", lambda d: png_of(d)[: len(png_of(d)) // 2], 400, "truncated"),
    ("zero-bytes", lambda d: b"", 400, "empty"),
    ("ten-thousand-square", lambda d: _big_png(), 413, "too large"),
]


@pytest.mark.parametrize(("name", "make", "status", "message"), BAD_UPLOADS)
def test_bad_uploads_are_refused_without_a_row(
    client, serving_registry, digits, name, make, status, message
):
    before = flushed_count(client, serving_registry)
    response = post_png(client, serving_registry.keys["web"], make(digits))
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert "Traceback" not in response.text
    assert flushed_count(client, serving_registry) == before


BAD_JSON = [
    ("wrong-shape", {"pixels": [[0, 1], [2, 3]]}, 422, "wrong shape"),
    ("nan", "NaN", 422, "NaN"),
    ("null", None, 422, "NaN"),
    ("out-of-range", 300, 422, "0..255"),
    ("negative", -1, 422, "0..255"),
    ("ragged", {"pixels": [[1, 2], [3]]}, 422, "rectangular"),
    ("no-image-field", {"image": "x"}, 422, "exactly one of"),
    ("bad-base64", {"image_base64": "***"}, 422, "base64"),
]


@pytest.mark.parametrize(("name", "payload", "status", "message"), BAD_JSON)
def test_bad_json_is_refused_without_a_row(
    client, serving_registry, digits, name, payload, status, message
):
    if not isinstance(payload, dict):  # one bad value inside an otherwise valid 8x8 array
        pixels = sample_pixels(digits)
        pixels[2][3] = payload
        payload = {"pixels": pixels}
    before = flushed_count(client, serving_registry)
    body = json.dumps(payload).replace('"NaN"', "NaN")
    response = client.post(PREDICT.format("web"), content=body, headers={
        "X-API-Key": serving_registry.keys["web"], "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert flushed_count(client, serving_registry) == before


def test_body_over_the_limit_is_refused(client, serving_registry):
    before = flushed_count(client, serving_registry)
    big = b"\0" * (10 * 1024 * 1024 + 1)
    declared = post_png(client, serving_registry.keys["web"], big)
    assert declared.status_code == 413 and "too large" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(11):
            yield b"\0" * (1024 * 1024)

    streamed = client.post(PREDICT.format("web"), content=chunks(), headers={
        "X-API-Key": serving_registry.keys["web"], "Content-Type": "image/png"})  # fmt: skip
    assert streamed.status_code == 413 and "too large" in streamed.json()["detail"]
    assert flushed_count(client, serving_registry) == before


def test_upload_limit_and_pixel_limit_are_configurable(serving_registry, digits, monkeypatch):
    monkeypatch.setenv("CHANNELHUB_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("CHANNELHUB_MAX_PIXELS", "50")
    settings = ServingSettings.from_env()
    assert (settings.max_upload_bytes, settings.max_pixels) == (1000, 50)
    with TestClient(create_app(serving_registry.database_url, settings=settings)) as small:
        key = serving_registry.keys["web"]
        too_big = small.post(PREDICT.format("web"), content=b"\0" * 1001,
                             headers={"X-API-Key": key, "Content-Type": "image/png"})  # fmt: skip
        assert too_big.status_code == 413
        headers = {"X-API-Key": key, "Content-Type": "image/png"}
        many_pixels = small.post(PREDICT.format("web"), content=png_of(digits), headers=headers)
        assert many_pixels.status_code == 413 and "64 pixels" in many_pixels.json()["detail"]


def test_other_refusals(client, serving_registry, digits):
    before = flushed_count(client, serving_registry)
    key = serving_registry.keys["web"]
    cases = [
        (post_png(client, key, png_of(digits), slug="nope"), 404, "does not exist"),
        (client.post(PREDICT.format("web"), files={"file": ("x.png", png_of(digits))}), 401,
         "missing API key"),
        (client.post(PREDICT.format("nope"), files={"file": ("x.png", png_of(digits))}), 401,
         "missing API key"),  # the key is checked before the channel's existence is told
        (post_png(client, "chk_wrong", png_of(digits)), 401, "invalid API key"),
        (post_png(client, serving_registry.keys["mobile"], png_of(digits)), 401, "invalid"),
        (post_png(client, serving_registry.keys["empty"], png_of(digits), slug="empty"), 503,
         "no production model version"),
        (client.post(PREDICT.format("web"), content=b"x", headers={
            "X-API-Key": key, "Content-Type": "text/plain"}), 415, "unsupported content type"),
        (client.post(PREDICT.format("web"), data={"other": "1"}, files={"f": ("a", b"1")},
                     headers={"X-API-Key": key}), 422, "field named 'file'"),
    ]  # fmt: skip
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
        assert ("Retry-After" in response.headers) == (status == 503)  # as the schema says
    assert flushed_count(client, serving_registry) == before


def test_paused_channel_answers_503_with_the_reason(client, serving_registry, digits):
    url, key = serving_registry.database_url, serving_registry.keys["mobile"]
    with session_scope(url) as s:
        set_channel_status(session=s, slug="mobile", status="paused", reason="data incident")
    assert wait_for(lambda: post_png(client, key, png_of(digits), "mobile").status_code == 503)
    response = post_png(client, key, png_of(digits), "mobile")
    assert "paused: data incident" in response.json()["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    with session_scope(url) as s:
        set_channel_status(session=s, slug="mobile", status="active")
    assert wait_for(lambda: post_png(client, key, png_of(digits), "mobile").status_code == 200)


def test_key_rotation_invalidates_the_old_key(client, serving_registry, digits):
    old = serving_registry.keys["mobile"]
    assert post_png(client, old, png_of(digits), "mobile").status_code == 200
    with session_scope(serving_registry.database_url) as s:
        new = rotate_api_key(session=s, slug="mobile")
    serving_registry.keys["mobile"] = new
    assert post_png(client, new, png_of(digits), "mobile").status_code == 200  # at once
    assert wait_for(lambda: post_png(client, old, png_of(digits), "mobile").status_code == 401, 2)
    assert post_png(client, new, png_of(digits), "mobile").status_code == 200


def predict_web(client, registry, digits) -> dict:
    response = post_png(client, registry.keys["web"], png_of(digits, 7))
    assert response.status_code == 200, response.text
    return response.json()


def test_feedback_on_a_fresh_prediction(client, serving_registry, digits):
    prediction = predict_web(client, serving_registry, digits)  # still in the write buffer
    before = count_feedback(serving_registry.database_url)
    response = client.post("/v1/feedback", headers={"X-API-Key": serving_registry.keys["web"]},
                           json={"prediction_id": prediction["prediction_id"], "rating": "down",
                                 "claimed_class_name": "4", "comment": "it is a four"})  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["claimed_class"] == 4
    assert count_feedback(serving_registry.database_url) == before + 1
    with session_scope(serving_registry.database_url) as s:  # through the action: audited
        events = list_events(
            session=s, object_type="feedback", object_id=response.json()["feedback_id"]
        )
    assert [(e.actor, e.action) for e in events] == [("channel:web", "feedback.submit")]
    assert events[0].details["rating"] == "down" and events[0].details["claimed_class"] == 4


def test_feedback_refusals(client, serving_registry, digits):
    prediction_id = predict_web(client, serving_registry, digits)["prediction_id"]
    web, mobile = serving_registry.keys["web"], serving_registry.keys["mobile"]
    before = count_feedback(serving_registry.database_url)
    cases = [
        (mobile, {"rating": "up"}, 404, "not found on this channel"),
        (None, {"rating": "up"}, 401, "missing API key"),
        ("chk_wrong", {"rating": "up"}, 401, "invalid API key"),
        (web, {"rating": "meh"}, 422, "rating"),
        (web, {"rating": "down", "claimed_class": 10}, 422, "between 0 and 9"),
        (web, {"rating": "down", "claimed_class_name": "cat"}, 422, "unknown class name"),
        (web, {"rating": "up", "prediction_id": "0" * 32}, 404, "not found"),
    ]
    for key, fields, status, message in cases:
        headers = {"X-API-Key": key} if key else {}
        response = client.post("/v1/feedback", headers=headers,
                               json={"prediction_id": prediction_id, **fields})  # fmt: skip
        assert response.status_code == status, (fields, response.text)
        assert message in response.json()["detail"]
    assert count_feedback(serving_registry.database_url) == before


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok", "worker": os.getpid()}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["channels"]["web"]["loaded"] is True
    assert ready.json()["channels"]["empty"]["loaded"] is False
    assert client.get("/openapi.json").status_code == 200


def test_candidate_and_promotion_are_picked_up_live(client, serving_registry, digits):
    url = serving_registry.database_url
    v1, v2 = serving_registry.version_ids
    with session_scope(url) as s:
        set_candidate(session=s, slug="web", version_id=v2, traffic=1.0)
    assert wait_for(lambda: predict_web(client, serving_registry, digits)["arm"] == "candidate")
    assert predict_web(client, serving_registry, digits)["version_id"] == v2
    with session_scope(url) as s:
        promote_version(session=s, slug="web", version_id=v2)
    assert wait_for(lambda: predict_web(client, serving_registry, digits)["arm"] == "production")
    assert predict_web(client, serving_registry, digits)["version"] == 2
    with session_scope(url) as s:
        promote_version(session=s, slug="web", version_id=v1)
    assert wait_for(lambda: predict_web(client, serving_registry, digits)["version"] == 1)


# Error kinds → statuses, through the app the factory builds (real lifespan, real SQLite) with a
# few extra routes that make the registry refuse for real.
errors_router = APIRouter(prefix="/test-errors")
FORBIDDEN = "channel:web (viewer) may not channel.promote: it needs the manager role"


@errors_router.post("/not-found")
def _missing_version(session: SessionDep) -> None:
    get_version(session=session, version_id=999_999)


@errors_router.post("/conflict")
def _same_model_twice(session: SessionDep) -> None:
    create_model(session=session, name="twice")
    create_model(session=session, name="twice")


@errors_router.post("/invalid")
def _bad_rating(session: SessionDep) -> None:
    add_feedback(
        session=session, feedback=FeedbackInput(prediction_id="p", channel_id=1, rating="meh")
    )


@errors_router.post("/forbidden")
def _viewer_acts() -> None:
    raise PermissionDenied(FORBIDDEN)


@pytest.fixture
def errors_client(registry):
    app = create_app(registry, settings=ServingSettings(refresh_seconds=60))
    app.include_router(errors_router)
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("not-found", 404, "model version 999999 does not exist"),
        ("conflict", 409, "a model named 'twice' already exists"),
        ("invalid", 422, "rating must be 'up' or 'down' (got 'meh')"),
        ("forbidden", 403, FORBIDDEN),
    ],
)
def test_registry_error_kinds_map_to_statuses(errors_client, path, status, message):
    response = errors_client.post(f"/test-errors/{path}")
    assert response.status_code == status, response.text
    assert response.json() == {"detail": message}


def test_a_refused_request_writes_nothing(errors_client, registry):
    assert errors_client.post("/test-errors/conflict").status_code == 409
    with session_scope(registry) as s:  # the first create_model was rolled back with the request
        assert list_models(session=s) == []


def test_every_registry_error_kind_has_a_status():
    import core.actions.base  # noqa: F401 - load every module that defines a registry error
    import core.actions.gate  # noqa: F401
    import core.actions.sign_in  # noqa: F401
    import db.models  # noqa: F401

    kinds, pending = set(), [RegistryError]
    while pending:
        cls = pending.pop()
        kinds.add(cls.kind)
        pending.extend(cls.__subclasses__())
    assert {"invalid", "not_found", "conflict", "forbidden"} <= kinds
    assert kinds <= STATUS_BY_KIND.keys()
