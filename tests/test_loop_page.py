"""Loop page: each stage shows its number from the registry, and one click retrains the
channel's production version with its annotated items, canary when done."""

from __future__ import annotations

import time

import numpy as np

from core.actions.alerts import open_alert
from core.actions.base import SYSTEM
from core.actions.feedback import annotate_feedback
from db.engine import session_scope
from db.queries.lookups import count_training_items, list_jobs
from db.repo.channels import get_channel
from db.repo.feedback import AnnotationInput
from db.repo.models import get_version
from db.repo.predictions import PredictionRecord, insert_predictions, new_prediction_id
from tests.page_helpers import audit_rows, check_page, fresh_caches, open_page  # noqa: F401
from tests.registry_helpers import serving_channel, user_feedback


def _loop_registry() -> int:
    """Channel web serving v1: one open alert, 5 thumbs-down items, 3 of them confirmed."""
    with session_scope() as s:
        _, version, channel = serving_channel(s)
        records = [PredictionRecord(new_prediction_id(), channel.id, version.id, "production",
                                    1, 0.7, np.full(10, 0.1).tolist(), 3.0, "inputs/x.png")
                   for _ in range(5)]  # fmt: skip
        insert_predictions(session=s, records=records)
        ids = [user_feedback(r.id, channel.id, "down", 7, session=s) for r in records]
    for feedback_id in ids[:3]:
        annotate_feedback(
            actor="ann", feedback_id=feedback_id, annotation=AnnotationInput(verdict="confirmed")
        )
    open_alert(actor=SYSTEM, channel_id=channel.id, signal="accuracy", message="accuracy low")
    return channel.id


def test_stages_show_their_numbers_and_retrain_is_one_click(registry):
    _loop_registry()
    at = open_page("loop", user="lena", role="manager")
    shown = [m.value for m in at.markdown]
    assert shown.count("### 1") == 1  # one open alert
    assert "### 2" in shown and "### 3" in shown  # 2 still to review, 3 annotated not learned
    captions = [c.value for c in at.caption]
    assert "accuracy" in captions
    # The annotated items are the model's, counted for every channel that serves it.
    with session_scope() as s:
        model_name = get_channel(session=s, slug="web").model_name
    assert any(f"for {model_name} (every channel it serves)" in c for c in captions)
    assert "loop_live_until" not in at.session_state  # nothing moves: no polling
    check_page(at.button(key="loop_retrain_web").click().run())
    assert at.session_state["loop_live_until"] > time.monotonic()  # redraws while it runs
    with session_scope() as s:
        (job,) = list_jobs(session=s)
    assert job.include_feedback and job.channel_slug == "web" and job.base_version == 1
    assert [r.action for r in audit_rows("lena", "job")] == ["job.retrain_channel"]
    assert at.button(key="loop_retrain_web").disabled  # a retrain is now running
    assert any("job #" in m.value for m in at.markdown)


def test_a_viewer_sees_the_loop_but_no_retrain_button(registry):
    _loop_registry()
    at = open_page("loop", user="vic", role="viewer")
    assert not [b for b in at.button if b.key == "loop_retrain_web"]
    assert any("Needs the manager role" in c.value for c in at.caption)


def test_accepting_the_suggestions_from_the_loop_returns_to_it(registry):
    _loop_registry()
    at = open_page("loop", user="lena", role="manager")
    (review,) = [link for link in at.get("page_link") if link.proto.label == "Review 2"]
    assert review.proto.query_string == "channel=web&back=loop"
    at = open_page("feedback", user="lena", role="manager", channel="web", back="loop")
    # The link's filters are also the widgets' defaults: what a browser falls back to when it
    # sends a select back as "nothing chosen" (ui.select).
    for key, shown in (("fb_channel", "web"), ("fb_status", "pending")):
        box = at.selectbox(key=key)
        assert box.options[box.proto.default] == box.options[box.index] == shown
    check_page(at.button(key="fb_accept").click().run())
    with session_scope() as s:
        assert count_training_items(session=s, unused_only=True) == 5  # 3 confirmed + 2 accepted
    assert [t.value for t in at.title] == ["Loop"]
    assert "Accepted the suggestion on 2 items." in [s.value for s in at.success]


def test_the_production_card_links_to_the_version_it_serves(registry):
    _loop_registry()
    at = open_page("loop", user="vic", role="viewer")
    with session_scope() as s:
        served = get_channel(session=s, slug="web").production_version_id
        number = get_version(session=s, version_id=served).version
    (link,) = [link for link in at.get("page_link") if link.proto.label.startswith("Open v")]
    assert link.proto.label == f"Open v{number}"
    assert link.proto.query_string == f"version={served}"
