"""The serving app factory: services in the lifespan, metrics, the body limit, error handlers,
routers."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core.logs import configure_logging
from core.serving.balance import BalanceMiddleware, balancer_for_this_process
from core.serving.errors import install_error_handlers
from core.serving.keys import redact_keys_in_logs
from core.serving.metrics import MetricsMiddleware, ServingMetrics
from core.serving.metrics import router as metrics_router
from core.serving.request_images import BodyLimitMiddleware
from core.serving.routes import feedback, health, predictions
from core.serving.services import Services
from core.serving.settings import ServingSettings
from db.settings import database_url as default_database_url


def create_app(
    database_url: str | None = None, *, settings: ServingSettings | None = None
) -> FastAPI:
    """The serving app; models load and the prediction log starts in its lifespan. Called with
    no arguments (`core.serving.app:create_app`, uvicorn's factory) it reads the environment."""
    url = database_url or default_database_url()
    settings = settings or ServingSettings.from_env()
    metrics = ServingMetrics()
    balance: dict = {"balancer": None}  # set in the lifespan: it belongs to the worker process

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A worker process starts with uvicorn's logging only: ours, and keys kept out of it.
        configure_logging(logging.getLogger("uvicorn.error").getEffectiveLevel())
        redact_keys_in_logs("uvicorn", "uvicorn.error", "uvicorn.access")
        services = await asyncio.to_thread(Services.start, url, settings, metrics)
        app.state.services = services
        balance["balancer"] = balancer_for_this_process()
        # Everything loaded so far (TensorFlow, the models) lives as long as the process: out of
        # the collector's sight, a full collection no longer walks it and stalls every request.
        gc.freeze()
        try:
            yield
        finally:
            if balance["balancer"] is not None:
                balance["balancer"].shares.close()
                balance["balancer"] = None
            await asyncio.to_thread(services.close)

    app = FastAPI(title="ChannelHub serving API", version="1", lifespan=lifespan)
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(BalanceMiddleware, balancer=lambda: balance["balancer"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: times refusals too
    install_error_handlers(app)
    app.include_router(predictions.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(metrics_router)
    return app
