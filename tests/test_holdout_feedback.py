"""Annotated feedback whose input is one of its dataset's holdout images is never trained on (the
worker leaves it out), so it never waits for a retrain: the registry knows the holdout images by
their digests from registration, and each prediction its input's digest from serving."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from core.datasets import dataset_holdout, register_builtin_dataset
from core.ml.datasets import LabelledImages, load_dataset
from core.ml.holdout import Holdout
from core.ml.images import image_digest
from db.engine import session_scope
from db.models import Feedback, HoldoutImage, Prediction
from db.queries.loop import channel_loops
from db.repo import feedback, predictions
from db.repo.channels import ChannelSpec, create_channel
from db.repo.datasets import get_holdout_bytes
from db.repo.feedback import AnnotationInput, FeedbackInput
from tests.registry_helpers import add_model_with_version

pytestmark = pytest.mark.both_databases


def _feedback(channel_id: int, version_id: int, digest: str | None) -> int:
    """A thumbs-up on a prediction whose input has `digest` (None: logged before inputs had
    digests), waiting for review."""
    pid = predictions.new_prediction_id()
    record = predictions.PredictionRecord(
        pid, channel_id, version_id, "production", 1, 0.6, [0.1] * 10, 3.0, f"inputs/{pid}.png",
        input_digest=digest,
    )  # fmt: skip
    with session_scope() as s:
        predictions.insert_predictions(session=s, records=[record])
        item = feedback.add_feedback(
            session=s,
            feedback=FeedbackInput(prediction_id=pid, channel_id=channel_id, rating="up"),
        )
    return item.id


def _annotated(channel_id: int, version_id: int, digest: str | None) -> int:
    """The same, confirmed."""
    item_id = _feedback(channel_id, version_id, digest)
    with session_scope() as s:
        feedback.annotate(
            session=s, feedback_id=item_id, author="ann",
            annotation=AnnotationInput(verdict="confirmed"),
        )  # fmt: skip
    return item_id


def _holdout_images(dataset_id: int) -> int:
    with session_scope() as s:
        return s.scalar(
            select(func.count())
            .select_from(HoldoutImage)
            .where(HoldoutImage.dataset_id == dataset_id)
        )


@dataclass(frozen=True)
class WebServingDigits:
    """digits registered (its holdout digests stored), a model version and channel web."""

    digits: LabelledImages
    holdout: Holdout
    dataset_id: int
    model_id: int
    version_id: int
    channel_id: int
    learnable: int  # a sample outside the holdout

    def digest(self, index: int) -> str:
        return image_digest(self.digits.x[index])


def _web_serving_digits() -> WebServingDigits:
    digits = load_dataset("digits")
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
        holdout = Holdout.from_bytes(get_holdout_bytes(session=s, dataset_id=dataset.id))
        model, version = add_model_with_version(s, dataset.id)
        channel, _ = create_channel(
            session=s, slug="web", spec=ChannelSpec(name="Web", model_id=model.id)
        )
    held = set(np.union1d(holdout.val_idx, holdout.test_idx).tolist())
    learnable = next(i for i in range(len(digits.y)) if i not in held)
    return WebServingDigits(
        digits, holdout, dataset.id, model.id, version.id, channel.id, learnable
    )


def test_feedback_on_a_holdout_image_never_waits_for_a_retrain(registry):
    web = _web_serving_digits()
    held = np.union1d(web.holdout.val_idx, web.holdout.test_idx)
    assert _holdout_images(web.dataset_id) == len({web.digest(i) for i in held})
    _annotated(web.channel_id, web.version_id, web.digest(web.learnable))
    _annotated(web.channel_id, web.version_id, web.digest(web.holdout.test_idx[0]))
    _annotated(web.channel_id, web.version_id, web.digest(web.holdout.val_idx[0]))
    _annotated(web.channel_id, web.version_id, None)  # waits until a retrain learns or leaves it
    with session_scope() as s:
        waiting = feedback.count_training_items(session=s, model_id=web.model_id, unused_only=True)
        added = feedback.count_training_items(session=s, model_id=web.model_id)
        (loop,) = channel_loops(session=s)
    assert (waiting, added, loop.annotated_not_learned) == (2, 2, 2)


def test_a_dataset_registered_before_digests_gets_them_when_its_holdout_is_next_read(registry):
    digits = load_dataset("digits")
    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
    stored = _holdout_images(dataset.id)
    with session_scope() as s:
        s.execute(delete(HoldoutImage))  # as a registry upgraded to 0016 has it
    with session_scope() as s:
        dataset_holdout(session=s, dataset=dataset, data=digits)  # what every training job does
    assert _holdout_images(dataset.id) == stored > 0


def test_the_review_queue_says_when_an_input_is_a_holdout_image(registry):
    from dashboard.review import HOLDOUT_NOTE
    from db.queries.review import review_item
    from tests.page_helpers import open_page, texts

    web = _web_serving_digits()
    plain = _feedback(web.channel_id, web.version_id, web.digest(web.learnable))
    replayed = _feedback(web.channel_id, web.version_id, web.digest(web.holdout.test_idx[0]))
    with session_scope() as s:
        marked = [review_item(session=s, feedback_id=i).holdout_image for i in (plain, replayed)]
    assert marked == [False, True]
    at = open_page("feedback", user="rita", role="annotator")  # the newest item first
    assert f"feedback #{replayed}" in texts(at)
    assert HOLDOUT_NOTE in [c.value for c in at.caption]


def test_digests_stored_by_another_worker_meanwhile_are_not_an_error(registry, monkeypatch):
    """Two workers read a holdout without digests at once: both see none, one stores them, the
    other's insert loses, and its job goes on."""
    import db.repo.datasets as datasets_repo

    with session_scope() as s:
        dataset = register_builtin_dataset(session=s)
    stored = _holdout_images(dataset.id)
    monkeypatch.setattr(datasets_repo, "has_holdout_images", lambda **_: False)  # the race
    with session_scope() as s:
        digests = set(s.scalars(select(HoldoutImage.digest)))
        lost = datasets_repo.store_holdout_images(session=s, dataset_id=dataset.id, digests=digests)
        s.add(HoldoutImage(dataset_id=dataset.id, digest="0" * 40))  # the session still works
    assert lost == 0
    assert _holdout_images(dataset.id) == stored + 1


def _stored_input(channel_id: int, version_id: int, image: np.ndarray | None) -> int:
    """Annotated feedback on a prediction logged before 0016: its input stored (None: the file
    is gone), its digest unknown."""
    from core.ml.images import encode_png
    from db.artifact_store import artifact_store

    item_id = _annotated(channel_id, version_id, None)
    if image is not None:
        artifact_store().write_bytes(_input_path(item_id), encode_png(image))
    return item_id


def _input_path(feedback_id: int) -> str:
    with session_scope() as s:
        return s.scalar(
            select(Prediction.input_path)
            .join(Feedback, Feedback.prediction_id == Prediction.id)
            .where(Feedback.id == feedback_id)
        )


def test_a_started_worker_marks_feedback_from_before_0016_on_holdout_images(registry, caplog):
    from core.training.holdout_copies import mark_holdout_copies
    from core.training.worker import TrainingWorker, WorkerOptions
    from db.repo.audit import list_events

    web = _web_serving_digits()
    with session_scope() as s:
        s.execute(delete(HoldoutImage))  # as a registry upgraded to 0016 has it
    replayed = _stored_input(web.channel_id, web.version_id, web.digits.x[web.holdout.test_idx[1]])
    kept = _stored_input(web.channel_id, web.version_id, web.digits.x[web.learnable])
    _stored_input(web.channel_id, web.version_id, None)  # the retrain decides about this one
    _feedback(web.channel_id, web.version_id, None)  # not annotated: no retrain reads it yet
    # Served after the upgrade (its digest known) but before the holdout's digests were stored.
    late = _annotated(web.channel_id, web.version_id, web.digest(web.holdout.val_idx[2]))

    def waiting() -> int:
        with session_scope() as s:
            return feedback.count_training_items(session=s, model_id=web.model_id, unused_only=True)

    assert waiting() == 4
    caplog.set_level("INFO", logger="channelhub.worker")
    assert TrainingWorker(WorkerOptions(exit_when_idle=True)).run() == 0  # no job: it only starts
    assert waiting() == 2 and _holdout_images(web.dataset_id) > 0
    with session_scope() as s:
        flags = dict(s.execute(select(Feedback.id, Feedback.holdout_image)).tuples().all())
        (event,) = list_events(session=s, action="feedback.mark_holdout_copies")
    assert (flags[replayed], flags[late], flags[kept]) == (True, True, False)
    assert (event.actor, event.details["count"]) == ("worker", 2)
    assert "2 inputs digested (1 unreadable), 2 feedback items marked" in caplog.text
    # Once done, a later start has nothing to read or mark, and records nothing.
    again = mark_holdout_copies(print)
    assert (again.datasets, again.digested, again.unreadable, again.marked) == ([], 0, 1, [])
    with session_scope() as s:
        assert len(list_events(session=s, action="feedback.mark_holdout_copies")) == 1
