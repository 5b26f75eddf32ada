"""Predictions: classify one image for a channel, with its canary split, and log the answer (the
answer goes out once its row is stored; a log that cannot store it answers 503)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from core.ml.images import image_digest
from core.serving.deps import ChannelDep, ServicesDep
from core.serving.keys import retry_after_header
from core.serving.model_cache import ChannelState, LoadedVersion
from core.serving.prediction_log import input_path_for
from core.serving.request_images import image_from_request
from core.serving.schemas import PREDICT_RESPONSES
from db.models import utcnow
from db.repo.predictions import PredictionRecord, new_prediction_id

router = APIRouter(prefix="/v1/channels", tags=["serving"])

# `channelhub simulate` (and any load generator) marks its requests with this header, so its
# traffic is told apart from real users' wherever predictions are shown.
SIMULATED_HEADER = "X-ChannelHub-Simulated"

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


class OrjsonResponse(Response):
    """A JSON answer encoded by orjson (about a tenth of the standard library's time)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ensure_servable(state: ChannelState, refresh_seconds: float) -> None:
    """503 naming why when the channel is paused, has no production version or it did not load,
    with `Retry-After` the refresh interval: the soonest this process can see it change."""
    routing = state.routing
    if routing.status == "paused":
        reason = f": {routing.status_reason}" if routing.status_reason else ""
        why = f"channel {routing.slug!r} is paused{reason}"
    elif routing.production_version_id is None:
        why = f"channel {routing.slug!r} has no production model version yet"
    elif state.serving is None:
        why = f"channel {routing.slug!r} is not ready: {state.load_error}"
    else:
        return
    raise HTTPException(503, why, headers={"Retry-After": retry_after_header(refresh_seconds)})


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


def is_simulated(request: Request) -> bool:
    """True when the request says it is simulated traffic (header value 1, true or yes)."""
    return request.headers.get(SIMULATED_HEADER, "").strip().lower() in ("1", "true", "yes")


@router.post("/{channel}/predict", openapi_extra=PREDICT_OPENAPI, responses=PREDICT_RESPONSES)
async def predict(state: ChannelDep, services: ServicesDep, request: Request) -> OrjsonResponse:
    """Classify one image for `channel`; the answer is logged with its input and latency."""
    started = time.perf_counter()
    ensure_servable(state, services.cache.refresh_seconds)
    version, arm = state.choose(services.cache.rng)
    request.state.arm = arm  # for the metrics
    upload = await image_from_request(
        request, version.input_shape, max_pixels=services.settings.max_pixels
    )
    log = services.predictions
    prediction_id = new_prediction_id()
    input_path = input_path_for(state.routing.slug, prediction_id, utcnow())
    answer = version.batcher.submit(upload.image)
    # While the model runs, a request alone in this process stores its input itself (under
    # load the writer stores the inputs of a batch together, off the event loop).
    lone = services.metrics.in_flight == 1
    input_stored = lone and log.store_input_early(input_path, upload.image, upload.png)
    digest = image_digest(upload.image)  # while the model runs
    try:
        try:
            probs = await asyncio.wrap_future(answer)
        except Exception:  # answered 500 by the error handler; the arm's error rate counts it
            log.count_error(state.routing.id, version.version_id, arm)
            raise
        body = prediction_body(prediction_id, version, arm, probs)
        record = PredictionRecord(
            id=prediction_id,
            channel_id=state.routing.id,
            version_id=version.version_id,
            arm=arm,
            predicted_class=body["class_index"],
            confidence=float(probs[body["class_index"]]),
            probabilities=[float(p) for p in probs],
            latency_ms=(time.perf_counter() - started) * 1000,
            input_path=input_path,
            created_at=utcnow(),
            simulated=is_simulated(request),
            input_digest=digest,
        )
    except BaseException:  # no row will come (an error, or the client went away)
        if input_stored:
            log.discard_input(input_path)
        raise
    # Stored before the answer goes out.
    await log.record(record, upload.image, png=upload.png, input_stored=input_stored)
    return OrjsonResponse(body)
