"""Health: liveness of the process and readiness of every channel's model."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from core.serving.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when every active channel with a production version has its model loaded."""
    ready, channels = services.cache.readiness()
    return JSONResponse({"ready": ready, "channels": channels}, status_code=200 if ready else 503)
