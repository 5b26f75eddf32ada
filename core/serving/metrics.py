"""Prometheus metrics of one serving process: requests, latency, errors by channel, arm and
status; batch sizes; model loads. Each process exposes its own at `/metrics`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
REQUEST_LABELS = ("route", "channel", "arm", "status")


class ServingMetrics:
    """The process's instruments, in a registry of their own (so apps in one process, as in
    the tests, never share counts)."""

    def __init__(self) -> None:
        # HTTP requests this process is answering now (changed on its event loop only).
        self.in_flight = 0
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "channelhub_requests", "HTTP requests answered", REQUEST_LABELS, registry=r
        )
        self.errors = Counter(
            "channelhub_request_errors", "requests answered 4xx or 5xx", REQUEST_LABELS, registry=r
        )
        self.latency = Histogram(
            "channelhub_request_duration_seconds", "time to answer a request, seconds",
            ("route", "channel", "arm"), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "channelhub_batch_size", "images per model call of the micro-batcher",
            ("version",), buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_loads = Counter(
            "channelhub_model_loads", "model version loads by result (ok, failed)",
            ("result",), registry=r,
        )  # fmt: skip
        self.model_load_seconds = Histogram(
            "channelhub_model_load_seconds", "time to load a model version, seconds",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r,
        )  # fmt: skip

    def observe_request(
        self, route: str, channel: str, arm: str, status: int, seconds: float
    ) -> None:
        labels = (route, channel, arm, str(status))
        self.requests.labels(*labels).inc()
        if status >= 400:
            self.errors.labels(*labels).inc()
        self.latency.labels(route, channel, arm).observe(seconds)

    def observe_load(self, ok: bool, seconds: float) -> None:
        self.model_loads.labels("ok" if ok else "failed").inc()
        self.model_load_seconds.observe(seconds)


class MetricsMiddleware:
    """Times every request and counts it under its route template (never the raw path, so
    a client cannot create series at will), the channel whose key was accepted and the arm."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.in_flight -= 1
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(
                route,
                state.get("channel", ""),
                state.get("arm", ""),
                status,
                time.perf_counter() - started,
            )


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The Prometheus text exposition of this process's metrics."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
