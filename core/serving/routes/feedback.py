"""Feedback: an end user's verdict on one of the channel's predictions, through the action layer."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt

from core.actions.base import Actor
from core.actions.feedback import submit_feedback
from core.serving.deps import KeyChannelDep, ServicesDep, SessionDep
from core.serving.schemas import FEEDBACK_RESPONSES
from db.errors import NotFoundError
from db.repo.datasets import get_dataset
from db.repo.feedback import FeedbackInput
from db.repo.models import get_version
from db.repo.predictions import get_prediction

router = APIRouter(prefix="/v1", tags=["serving"])


class FeedbackIn(BaseModel):
    """A verdict on one prediction. `claimed_class` is strictly an integer (`false` is not 0);
    a comment with control characters or bidirectional overrides is refused (422)."""

    prediction_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")
    rating: Literal["up", "down"]
    claimed_class: StrictInt | None = Field(default=None, description="index of the right class")
    claimed_class_name: str | None = Field(default=None, max_length=200, description="or its name")
    comment: str = Field(
        default="", max_length=2000, description="free text; newlines and tabs allowed"
    )


def claimed_class_index(body: FeedbackIn, class_names: list[str]) -> int | None:
    """The class the user says is right, from its index or its name (both must agree).
    An index out of range is refused by the registry (a 422 through the error handler)."""
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


@router.post("/feedback", status_code=201, responses=FEEDBACK_RESPONSES)
def feedback(
    body: FeedbackIn, channel: KeyChannelDep, services: ServicesDep, session: SessionDep
) -> JSONResponse:
    """Record a user's verdict on one of this channel's predictions."""
    if services.predictions.is_pending(body.prediction_id):
        services.predictions.flush()
    prediction = get_prediction(session=session, prediction_id=body.prediction_id)
    if prediction is None or prediction.channel_id != channel.id:
        raise NotFoundError(f"prediction {body.prediction_id!r} not found on this channel")
    version = get_version(session=session, version_id=prediction.version_id)
    names = get_dataset(session=session, dataset_id=version.dataset_id).class_names
    claimed = claimed_class_index(body, names)
    info = submit_feedback(
        actor=Actor(f"channel:{channel.slug}", "viewer"),
        session=session,
        feedback=FeedbackInput(
            prediction.id, channel.id, body.rating, claimed, body.comment.strip(), len(names)
        ),
    )
    answer = {
        "feedback_id": info.id,
        "prediction_id": info.prediction_id,
        "rating": info.rating,
        "claimed_class": claimed,
        "claimed_class_name": None if claimed is None else names[claimed],
    }
    return JSONResponse(answer, status_code=201)
