"""Health: liveness of the process and readiness of every channel's model."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from core.serving.deps import ServicesDep
from core.serving.schemas import READINESS_RESPONSES

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str | int]:
    """The process is up and answering; `worker` is its process id (one of `--workers N`)."""
    return {"status": "ok", "worker": os.getpid()}


@router.get("/readyz", responses=READINESS_RESPONSES)
def readyz(services: ServicesDep) -> JSONResponse:
    """Ready once the registry was read, while the prediction log can write and unless every
    channel that should serve has nothing loaded; each channel says whether it is ready."""
    ready, channels = services.cache.readiness()
    log = services.predictions.health()
    body = {
        "ready": ready and log.ok,
        "channels": channels,
        "prediction_log": {
            "ok": log.ok,
            "error": log.error if not log.ok else "",
            "pending": log.pending,
            "failed_rows": log.failed_rows,
        },
    }
    if not log.ok:
        body["reason"] = f"the prediction log cannot write: {log.error}"
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
