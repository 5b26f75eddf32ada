"""Property-based tests of the serving API from its own OpenAPI schema (schemathesis on
Hypothesis), in process on a real registry with a channel and a tiny model: no 5xx, every
answer's status, content type, headers and body as documented, data that breaks the schema
refused, and no row left behind by a refused request."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.serving.app import create_app
from core.serving.settings import ServingSettings
from tests.serving_helpers import count_feedback, count_rows, png_of

pytest_plugins = ["tests.serving_fixtures"]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Bounded: about 60 examples per operation and phase keeps the whole run under a minute.
FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


# The schema does not depend on the registry, so it is read from an app that never starts;
# the requests go to another one, started on the module's registry.
SPEC = create_app("sqlite://", settings=ServingSettings()).openapi()
schema = schemathesis.openapi.from_dict(SPEC)


@pytest.fixture(scope="module")
def client(serving_registry):
    """Schemathesis' in-process client of the real app; entering it starts the lifespan."""
    app = create_app(serving_registry.database_url, settings=ServingSettings(refresh_seconds=0.2))
    with get_client(app) as asgi_client:
        yield asgi_client
    shutdown_lifespans()  # closes the services: the prediction log writes what it holds


@pytest.fixture(scope="module")
def real_predictions(client, serving_registry, digits) -> list[str]:
    """Ids of predictions made on `web`, so generated feedback also reaches real rows."""
    ids = []
    for index in range(20):
        response = client.post(
            "/v1/channels/web/predict", data=png_of(digits, index),
            headers={"X-API-Key": serving_registry.keys["web"], "Content-Type": "image/png"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        ids.append(response.json()["prediction_id"])
    return ids


def stored_rows(database_url: str) -> tuple[int, int]:
    return count_rows(database_url), count_feedback(database_url)


def aim_at_real_rows(case, data, keys: dict[str, str], predictions: list[str]) -> None:
    """Point some generated requests at what exists (a channel, its key, a prediction), so
    the fuzzing reaches past the key check and the lookups, not only their refusals. Only
    serving channels: `empty` answers its documented 503 by design, and any 5xx fails here."""
    key = data.draw(st.sampled_from([keys["web"], keys["mobile"], keys["empty"], "chk_x", None]))
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
    if key is not None:
        case.headers["X-API-Key"] = key
    path, body = generated_validly(case, "path"), generated_validly(case, "body")
    if path and "channel" in (case.path_parameters or {}) and data.draw(st.booleans()):
        case.path_parameters["channel"] = data.draw(st.sampled_from(["web", "mobile"]))
    if body and isinstance(case.body, dict) and "prediction_id" in case.body:
        if data.draw(st.booleans()):
            case.body["prediction_id"] = data.draw(st.sampled_from(predictions))


def generated_validly(case, location: str) -> bool:
    """Whether schemathesis made this part of the request to fit the schema: a part made to
    break it is left alone, or the request it is sure must be refused could be a valid one."""
    parts = case.meta.components if case.meta is not None else {}
    info = next((i for loc, i in parts.items() if str(loc.value) == location), None)
    return info is None or info.mode.name != "NEGATIVE"


@pytest.mark.slow
@schema.parametrize()
@schema.given(data=st.data())
@FUZZ_SETTINGS
def test_api_answers_as_documented(case, data, client, serving_registry, real_predictions):
    aim_at_real_rows(case, data, serving_registry.keys, real_predictions)
    before = stored_rows(serving_registry.database_url)
    response = case.call(base_url=client.base_url, session=client)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert stored_rows(serving_registry.database_url) == before, response.text
