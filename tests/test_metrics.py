"""`/metrics`: the Prometheus text exposition counts a known number of requests by route,
channel, arm and status, their latency, batch sizes and model loads."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.serving.api import create_app
from core.serving.metrics import MetricsMiddleware, ServingMetrics
from core.serving.settings import ServingSettings
from db.engine import session_scope
from db.repo.channels import ChannelSpec, create_channel
from tests.serving_helpers import png_of

pytest_plugins = ["tests.serving_fixtures"]

PREDICT_ROUTE = "/v1/channels/{channel}/predict"


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """Every sample of `/metrics` by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_a_known_number_of_requests_by_channel_and_status(registry):
    with session_scope(registry) as s:
        _, key = create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web")
        )  # no model: predicts are 503
    app = create_app(registry, settings=ServingSettings(refresh_seconds=0.1))
    with TestClient(app) as client:
        for _ in range(5):
            client.post("/v1/channels/web/predict", headers={"X-API-Key": key}, json={})
        for _ in range(2):
            client.post("/v1/channels/web/predict", headers={"X-API-Key": key + "x"}, json={})
        client.get("/healthz")
        client.get("/no/such/path")
        samples = scrape(client)
    accepted = dict(route=PREDICT_ROUTE, channel="web", arm="", status="503")
    refused = dict(route=PREDICT_ROUTE, channel="", arm="", status="401")  # no channel: key refused
    assert sample(samples, "channelhub_requests_total", **accepted) == 5
    assert sample(samples, "channelhub_request_errors_total", **accepted) == 5
    assert sample(samples, "channelhub_requests_total", **refused) == 2
    assert sample(samples, "channelhub_request_errors_total", **refused) == 2
    health = dict(route="/healthz", channel="", arm="", status="200")
    assert sample(samples, "channelhub_requests_total", **health) == 1
    assert sample(samples, "channelhub_request_errors_total", **health) == 0
    unmatched = dict(route="unmatched", channel="", arm="", status="404")  # never the raw path
    assert sample(samples, "channelhub_requests_total", **unmatched) == 1
    latency = dict(route=PREDICT_ROUTE, channel="web", arm="")
    assert sample(samples, "channelhub_request_duration_seconds_count", **latency) == 5
    assert sample(samples, "channelhub_request_duration_seconds_bucket", le="+Inf", **latency) == 5


def test_metrics_of_served_predictions_name_the_arm_the_batches_and_the_loads(
    serving_registry, digits
):
    app = create_app(serving_registry.database_url, settings=ServingSettings(refresh_seconds=0.2))
    headers = {"X-API-Key": serving_registry.keys["web"]}
    with TestClient(app) as client:
        for i in range(3):
            files = {"file": ("x.png", png_of(digits, i), "image/png")}
            answer = client.post("/v1/channels/web/predict", files=files, headers=headers)
            assert answer.status_code == 200, answer.text
        samples = scrape(client)
    ok = dict(route=PREDICT_ROUTE, channel="web", arm="production", status="200")
    assert sample(samples, "channelhub_requests_total", **ok) == 3
    assert (
        sample(samples, "channelhub_model_loads_total", result="ok") == 1
    )  # web and mobile share v1
    assert sample(samples, "channelhub_model_load_seconds_count") == 1
    batches = {k: v for k, v in samples.items() if k[0] == "channelhub_batch_size_sum"}
    assert list(batches.values()) == [3]  # three images went through the batcher


def test_requests_in_flight_are_counted_while_they_are_answered():
    """`in_flight` is how a prediction knows it is alone in its process (and may store its
    input while its model runs, see core/serving/routes/predictions.py)."""
    metrics = ServingMetrics()
    seen: list[int] = []
    both_in = asyncio.Event()

    async def app(scope, receive, send) -> None:
        seen.append(metrics.in_flight)
        if len(seen) == 2:
            both_in.set()
        await asyncio.wait_for(both_in.wait(), 5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message) -> None:
        pass

    async def two_requests() -> None:
        wrapped = MetricsMiddleware(app, metrics=metrics)
        scope = {"type": "http", "path": "/x", "method": "GET", "headers": []}
        await asyncio.gather(*(wrapped(dict(scope), None, send) for _ in range(2)))

    asyncio.run(two_requests())
    assert seen == [1, 2]
    assert metrics.in_flight == 0
