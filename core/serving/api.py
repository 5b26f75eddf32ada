"""Serving API: per-channel predictions, feedback ingestion, health and readiness (FastAPI)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.serving.model_cache import ChannelState, LoadedVersion, ModelCache, ModelUnavailable
from core.serving.prediction_log import PredictionLog, input_path_for
from core.serving.request_images import (
    BodyLimitMiddleware,
    BodyTooLarge,
    InputError,
    image_from_request,
    too_large_response,
)
from core.serving.settings import ServingSettings
from db.engine import get_engine, session_scope
from db.models import utcnow
from db.repo.channels import key_matches_hash
from db.repo.datasets import get_dataset
from db.errors import RegistryError
from db.repo.feedback import add_feedback
from db.repo.models import get_version
from db.repo.predictions import PredictionRecord, get_prediction, new_prediction_id
from db.repo.serving_queries import channel_for_api_key
from db.settings import artifact_dir
from db.settings import database_url as default_database_url

log = logging.getLogger("channelhub.serving")

PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image_base64": {"type": "string"},
                        "pixels": {"type": "array", "items": {}},
                    },
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class FeedbackIn(BaseModel):
    prediction_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"]
    claimed_class: int | None = Field(default=None, description="index of the right class")
    claimed_class_name: str | None = Field(default=None, description="or its name")
    comment: str = Field(default="", max_length=2000)


def api_key_of(request: Request) -> str | None:
    """The key from `X-API-Key`, or from `Authorization: Bearer <key>`."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _key_matches(state: ChannelState, key: str | None) -> bool:
    return key_matches_hash(state.routing.api_key_hash, key)


async def authorized_channel(cache: ModelCache, slug: str, key: str | None) -> ChannelState:
    """The channel's routing state, or 404/401. The cached key hash answers the common case; a
    mismatch is checked against the registry, so a just-rotated key works at once (the old one
    stops at the next poll of the registry)."""
    state = cache.channel(slug)
    if state is not None and _key_matches(state, key):
        return state
    if state is None:
        await asyncio.to_thread(cache.refresh_if_stale)  # maybe a channel created just now
        state = cache.channel(slug)
        if state is None:
            raise HTTPException(404, f"channel {slug!r} does not exist")
    if not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    if _key_matches(state, key):
        return state
    routing = await asyncio.to_thread(cache.routing_for_key, key)
    if routing is None or routing.slug != slug:
        raise HTTPException(401, "invalid API key for this channel")
    return dataclasses.replace(state, routing=routing)


def _servable(state: ChannelState) -> None:
    routing = state.routing
    if routing.status == "paused":
        reason = f": {routing.status_reason}" if routing.status_reason else ""
        raise HTTPException(503, f"channel {routing.slug!r} is paused{reason}")
    if routing.production_version_id is None:
        raise HTTPException(503, f"channel {routing.slug!r} has no production model version yet")
    if state.production is None:
        raise HTTPException(503, f"channel {routing.slug!r} is not ready: {state.load_error}")


def prediction_body(
    prediction_id: str, version: LoadedVersion, arm: str, probs: Any
) -> dict[str, Any]:
    index = int(probs.argmax())
    return {
        "prediction_id": prediction_id,
        "class_index": index,
        "class_name": version.class_names[index],
        "confidence": round(float(probs[index]), 6),
        "probabilities": {
            n: round(float(p), 6) for n, p in zip(version.class_names, probs, strict=True)
        },
        "model": version.model_name,
        "version": version.version,
        "version_id": version.version_id,
        "arm": arm,
    }


def claimed_class_index(body: FeedbackIn, class_names: list[str]) -> int | None:
    """The class the user says is right, from its index or its name (both must agree).
    An index out of range is refused by `add_feedback` (a 422 through the registry handler)."""
    index = body.claimed_class
    if body.claimed_class_name is not None:
        name = body.claimed_class_name.strip()
        if name not in class_names:
            raise HTTPException(422, f"unknown class name {name!r} for this model")
        by_name = class_names.index(name)
        if index is not None and index != by_name:
            raise HTTPException(422, "claimed_class and claimed_class_name name different classes")
        index = by_name
    return index


@dataclass
class Services:
    """What the endpoints share: the model cache, the prediction log and the settings."""

    database_url: str
    settings: ServingSettings
    cache: ModelCache
    predictions: PredictionLog

    @classmethod
    def start(cls, database_url: str, settings: ServingSettings) -> Services:
        get_engine(database_url)  # create or upgrade the schema before any thread uses it
        predictions = PredictionLog(
            database_url,
            artifact_dir(),
            flush_seconds=settings.flush_seconds,
            flush_rows=settings.flush_rows,
        )
        cache = ModelCache(
            database_url,
            refresh_seconds=settings.refresh_seconds,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000,
            seed=settings.seed,
        )
        cache.start()
        return cls(database_url, settings, cache, predictions)

    def close(self) -> None:
        """Answer queued requests, then write every logged prediction."""
        self.cache.close()
        self.predictions.close()


async def predict(channel: str, request: Request) -> JSONResponse:
    """Classify one image for `channel`; the answer is logged with its input and latency."""
    started = time.perf_counter()
    services: Services = request.app.state.services
    state = await authorized_channel(services.cache, channel, api_key_of(request))
    _servable(state)
    version, arm = state.choose(services.cache.rng)
    image = await image_from_request(
        request, version.input_shape, max_pixels=services.settings.max_pixels
    )
    probs = await version.batcher.predict(image)
    prediction_id = new_prediction_id()
    body = prediction_body(prediction_id, version, arm, probs)
    now = utcnow()
    record = PredictionRecord(
        id=prediction_id,
        channel_id=state.routing.id,
        version_id=version.version_id,
        arm=arm,
        predicted_class=body["class_index"],
        confidence=float(probs[body["class_index"]]),
        probabilities=[float(p) for p in probs],
        latency_ms=(time.perf_counter() - started) * 1000,
        input_path=input_path_for(channel, prediction_id, now),
        created_at=now,
    )
    services.predictions.submit(record, image)
    return JSONResponse(body)


def feedback(body: FeedbackIn, request: Request) -> JSONResponse:
    """Record a user's verdict on one of this channel's predictions."""
    services: Services = request.app.state.services
    key = api_key_of(request)
    if not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    if services.predictions.is_pending(body.prediction_id):
        services.predictions.flush()
    with session_scope(services.database_url) as session:
        channel = channel_for_api_key(session=session, key=key)
        if channel is None:
            raise HTTPException(401, "invalid API key")
        prediction = get_prediction(session=session, prediction_id=body.prediction_id)
        if prediction is None or prediction.channel_id != channel.id:
            raise HTTPException(404, f"prediction {body.prediction_id!r} not found on this channel")
        version = get_version(session=session, version_id=prediction.version_id)
        names = get_dataset(session=session, dataset_id=version.dataset_id).class_names
        claimed = claimed_class_index(body, names)
        info = add_feedback(
            session=session,
            prediction_id=prediction.id,
            channel_id=channel.id,
            rating=body.rating,
            claimed_class=claimed,
            comment=body.comment.strip(),
            num_classes=len(names),
        )
    answer = {
        "feedback_id": info.id,
        "prediction_id": info.prediction_id,
        "rating": info.rating,
        "claimed_class": claimed,
        "claimed_class_name": None if claimed is None else names[claimed],
    }
    return JSONResponse(answer, status_code=201)


def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


def readyz(request: Request) -> JSONResponse:
    """Ready when every active channel with a production version has its model loaded."""
    ready, channels = request.app.state.services.cache.readiness()
    return JSONResponse({"ready": ready, "channels": channels}, status_code=200 if ready else 503)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
    def detail(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    async def on_input(_request: Request, exc: InputError) -> JSONResponse:
        return detail(exc.status_code, exc.detail)

    async def on_too_large(request: Request, _exc: BodyTooLarge) -> JSONResponse:
        return too_large_response(
            request.app.state.services.settings.max_upload_bytes, "streamed body"
        )

    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return detail(422, _validation_message(exc))

    async def on_unavailable(_request: Request, exc: ModelUnavailable) -> JSONResponse:
        return detail(503, f"model not available, retry: {exc}")

    async def on_registry(_request: Request, exc: RegistryError) -> JSONResponse:
        return detail(422, str(exc))

    async def on_crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return detail(500, "internal server error")

    app.add_exception_handler(InputError, on_input)
    app.add_exception_handler(BodyTooLarge, on_too_large)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ModelUnavailable, on_unavailable)
    app.add_exception_handler(RegistryError, on_registry)
    app.add_exception_handler(Exception, on_crash)


def create_app(
    database_url: str | None = None, *, settings: ServingSettings | None = None
) -> FastAPI:
    """The serving app; models load and the prediction log starts in its lifespan."""
    url = database_url or default_database_url()
    settings = settings or ServingSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(Services.start, url, settings)
        app.state.services = services
        try:
            yield
        finally:
            await asyncio.to_thread(services.close)

    app = FastAPI(title="ChannelHub serving API", version="1", lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    _add_error_handlers(app)
    app.post("/v1/channels/{channel}/predict", openapi_extra=PREDICT_OPENAPI, tags=["serving"])(
        predict
    )
    app.post("/v1/feedback", status_code=201, tags=["serving"])(feedback)
    app.get("/healthz", tags=["health"])(healthz)
    app.get("/readyz", tags=["health"])(readyz)
    return app


def run_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    database_url: str | None = None,
    settings: ServingSettings | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM; shutdown answers in-flight requests and writes the log."""
    import uvicorn

    from core.logs import configure_logging

    configure_logging(log_level)
    app = create_app(database_url, settings=settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=30,
    )


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `channelhub serve`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    parser.add_argument(
        "--max-upload-bytes",
        type=int,
        default=None,
        help="body size limit (default CHANNELHUB_MAX_UPLOAD_BYTES or 10 MiB)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image accepted, in pixels (default 25,000,000)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")


def run_serve(args: argparse.Namespace) -> int:
    """Run `channelhub serve` with parsed `args`."""
    settings = ServingSettings.from_env().with_overrides(
        max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels
    )
    run_server(
        args.host,
        args.port,
        database_url=args.database_url,
        settings=settings,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m core.serving.api", description=__doc__)
    add_serve_arguments(_parser)
    raise SystemExit(run_serve(_parser.parse_args()))
