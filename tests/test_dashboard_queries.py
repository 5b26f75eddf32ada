"""Dashboard list queries against a real SQLite file: date-range filters on whole UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import update

from db.engine import session_scope
from db.models import Feedback, ModelVersion
from db.queries.registry import VersionFilter, version_page
from db.queries.review import ReviewFilter, review_page
from db.repo import channels, feedback, predictions
from db.repo.channels import ChannelSpec
from db.repo.feedback import FeedbackInput
from tests.registry_helpers import add_dataset, add_model_with_version, add_version

pytestmark = pytest.mark.both_databases


def _stamp(session, table, row_id: int, when: datetime) -> None:
    session.execute(update(table).where(table.id == row_id).values(created_at=when))


def test_versions_are_filtered_by_creation_day_inclusive(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        model, v1 = add_model_with_version(s, dataset_id)
        v2 = add_version(s, model.id, dataset_id)
        _stamp(s, ModelVersion, v1.id, datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
        _stamp(s, ModelVersion, v2.id, datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    with session_scope() as s:

        def ids(first, last):
            rows, total = version_page(
                session=s, filters=VersionFilter(created_from=first, created_to=last)
            )
            assert total == len(rows)
            return sorted(r.id for r in rows)

        assert ids(date(2026, 3, 1), date(2026, 3, 1)) == [v1.id]
        assert ids(date(2026, 3, 2), None) == [v2.id]
        assert ids(None, date(2026, 3, 2)) == [v1.id, v2.id]
        assert ids(date(2026, 3, 3), None) == []


def test_review_queue_is_filtered_by_day(registry):
    with session_scope() as s:
        dataset_id = add_dataset(s)
        _, version = add_model_with_version(s, dataset_id)
        web, _ = channels.create_channel(session=s, slug="web", spec=ChannelSpec(name="Web"))
        ids = []
        for day in (1, 2, 3):
            pid = predictions.new_prediction_id()
            predictions.insert_predictions(
                session=s,
                records=[predictions.PredictionRecord(
                    pid, web.id, version.id, "production", 1, 0.5, [0.1] * 10, 1.0, None
                )],
            )  # fmt: skip
            fb = feedback.add_feedback(
                session=s, feedback=FeedbackInput(prediction_id=pid, channel_id=web.id, rating="up")
            )
            _stamp(s, Feedback, fb.id, datetime(2026, 5, day, 12, tzinfo=UTC))
            ids.append(fb.id)
    with session_scope() as s:
        window = ReviewFilter(created_from=date(2026, 5, 2), created_to=date(2026, 5, 3))
        rows, total = review_page(session=s, filters=window)
    assert total == 2 and sorted(r.id for r in rows) == ids[1:]


def test_version_choices_say_their_accuracy_is_offline(registry):
    """Labels stand next to live figures (SLOs, feedback accuracy): the holdout's accuracy is
    named as such."""
    from db.queries.registry import version_choices

    with session_scope() as s:
        model, v1 = add_model_with_version(s, add_dataset(s))
        s.execute(update(ModelVersion).where(ModelVersion.id == v1.id).values(accuracy=0.9876))
        unscored = add_version(s, model.id, v1.dataset_id)
        s.execute(update(ModelVersion).where(ModelVersion.id == unscored.id).values(accuracy=None))
    with session_scope() as s:
        labels = dict(version_choices(session=s, model_id=model.id))
    assert labels == {
        v1.id: "digits-classifier v1 · offline acc 98.8%",
        unscored.id: "digits-classifier v2",
    }
