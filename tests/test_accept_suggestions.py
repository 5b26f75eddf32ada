"""Bulk "accept the suggestions" keeps each item's own suggested class (not one for all), and
does not skip items whose user named no class."""

from __future__ import annotations

import numpy as np

from core.actions.feedback import accept_suggestions
from db.engine import session_scope
from db.queries.lookups import annotation_history, list_events
from db.queries.review import review_item, suggest_verdict
from db.repo.channels import ChannelSpec, create_channel
from db.repo.predictions import PredictionRecord, insert_predictions, new_prediction_id
from tests.registry_helpers import add_dataset, add_model_with_version, user_feedback


def _prediction(session, channel_id: int, version_id: int, cls: int, second: int) -> str:
    probs = np.full(10, 0.02)
    probs[cls], probs[second] = 0.6, 0.24
    record = PredictionRecord(new_prediction_id(), channel_id, version_id, "production", cls,
                              0.6, probs.tolist(), 3.0, None)  # fmt: skip
    insert_predictions(session=session, records=[record])
    return record.id


def test_each_item_keeps_its_own_suggested_class(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        channel = create_channel(session=s, slug="web", spec=ChannelSpec(name="Web", kind="web"))[0]
        # (predicted, runner-up, rating, claimed): two name a class, one names none, one agrees.
        cases = [(1, 3, "down", 3), (2, 8, "down", 8), (4, 7, "down", None), (5, 6, "up", None)]
        ids = []
        for predicted, second, rating, claimed in cases:
            pid = _prediction(s, channel.id, version.id, predicted, second)
            ids.append(user_feedback(pid, channel.id, rating, claimed, session=s))
    with session_scope() as s:
        expected = [suggest_verdict(review_item(session=s, feedback_id=i)) for i in ids]
    result = accept_suggestions(actor="ann", feedback_ids=[*ids, 10**6])
    assert result.applied == ids and result.skipped == [f"#{10**6}: does not exist"]
    with session_scope() as s:
        stored = [annotation_history(session=s, feedback_id=i)[0] for i in ids]
        (event,) = [e for e in list_events(session=s, limit=50) if e.actor == "ann"]
    assert [(a.verdict, a.true_class) for a in stored] == [
        ("confirmed", 3), ("confirmed", 8), ("corrected", 7), ("confirmed", 5)
    ]  # fmt: skip
    assert [(a.verdict, a.true_class) for a in stored] == [
        (e.verdict, e.true_class) for e in expected
    ]
    assert event.action == "feedback.accept_suggestions"
    assert event.details["verdicts"] == {"confirmed": 3, "corrected": 1}
