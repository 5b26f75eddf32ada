"""How the API answers errors: a registry error's kind picks its status; others carry their own."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.serving.keys import retry_after_header
from core.serving.model_cache import ModelUnavailable
from core.serving.prediction_log import LogRefused
from core.serving.request_images import BodyTooLarge, InputError, too_large_response
from db.errors import RegistryError

log = logging.getLogger("channelhub.serving")

# HTTP status of each `RegistryError.kind` (PermissionDenied in core.actions is "forbidden").
STATUS_BY_KIND: dict[str, int] = {
    "invalid": 422,
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unauthorized": 401,
}


def detail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def validation_message(exc: RequestValidationError) -> str:
    """Every field error of a request in one line: `field: problem; field: problem`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


async def on_registry_error(_request: Request, exc: RegistryError) -> JSONResponse:
    """A refusal from the registry or an action: its kind says which 4xx."""
    return detail(STATUS_BY_KIND.get(exc.kind, 422), str(exc))


async def on_input_error(_request: Request, exc: InputError) -> JSONResponse:
    return detail(exc.status_code, exc.detail)


async def on_too_large(request: Request, _exc: BodyTooLarge) -> JSONResponse:
    return too_large_response(request.app.state.services.settings.max_upload_bytes, "streamed body")


async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return detail(422, validation_message(exc))


async def on_unavailable(request: Request, exc: ModelUnavailable) -> JSONResponse:
    """The version the request was routed to went away (a promotion swapped it): the next
    refresh routes a retry to what serves now."""
    answer = detail(503, f"model not available, retry: {exc}")
    refresh = request.app.state.services.cache.refresh_seconds
    answer.headers["Retry-After"] = retry_after_header(refresh)
    return answer


async def on_log_refused(_request: Request, exc: LogRefused) -> JSONResponse:
    """The prediction could not be stored, so it is not acknowledged: retry later."""
    answer = detail(503, f"prediction not stored, retry: {exc.reason}")
    answer.headers["Retry-After"] = retry_after_header(exc.retry_after_s)
    return answer


async def on_crash(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return detail(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as `{"detail": message}` with its status; never a traceback."""
    app.add_exception_handler(RegistryError, on_registry_error)
    app.add_exception_handler(InputError, on_input_error)
    app.add_exception_handler(BodyTooLarge, on_too_large)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ModelUnavailable, on_unavailable)
    app.add_exception_handler(LogRefused, on_log_refused)
    app.add_exception_handler(Exception, on_crash)
