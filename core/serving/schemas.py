"""What the API answers, as its OpenAPI schema documents it: the one error model every refusal
uses, the bodies of the successful answers, and each route's table of statuses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every refusal and error: one message naming the problem (never a traceback)."""

    detail: str = Field(description="what was wrong, in one line")


class PredictionOut(BaseModel):
    prediction_id: str
    class_index: int
    class_name: str
    confidence: float
    probabilities: dict[str, float] = Field(description="probability of each class, by name")
    model: str
    version: int
    version_id: int
    arm: Literal["production", "candidate"]


class FeedbackOut(BaseModel):
    feedback_id: int
    prediction_id: str
    rating: Literal["up", "down"]
    claimed_class: int | None
    claimed_class_name: str | None


class ReadinessOut(BaseModel):
    ready: bool
    channels: dict[str, Any] = Field(description="each active channel's model state")


# What each refusal means, wherever a route can give it.
ERROR_MEANINGS: dict[int, str] = {
    400: "malformed body: not valid JSON, nested too deep, or image bytes that do not decode",
    401: "missing API key, or a key that is not this channel's",
    404: "no such channel, or no such prediction on the key's channel",
    409: "the prediction already has its feedback",
    413: "body over the upload limit, or an image over the pixel limit",
    415: "content type or image format not accepted: send PNG or JPEG",
    422: "a field is missing, of the wrong type or out of range; `detail` names each one",
    429: "the key's rate limit is exceeded; retry after `Retry-After` seconds",
    503: "the channel cannot answer now (paused, no production version, model not loaded)",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries of a route's refusals, all answered as `ErrorOut`. Listing 422
    here replaces FastAPI's default list-shaped validation error with what is really sent."""
    table: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorOut, "description": ERROR_MEANINGS[status]}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        table[status] = entry
    return table


PREDICT_RESPONSES = {
    200: {"model": PredictionOut, "description": "the predicted class and its probabilities"},
    **error_responses(400, 401, 404, 413, 415, 422, 429, 503),
}
FEEDBACK_RESPONSES = {
    201: {"model": FeedbackOut, "description": "the feedback was stored"},
    **error_responses(400, 401, 404, 409, 413, 422, 429),
}
READINESS_RESPONSES = {
    200: {"model": ReadinessOut, "description": "every active channel's model is loaded"},
    503: {"model": ReadinessOut, "description": "some channel's model is not loaded"},
}
