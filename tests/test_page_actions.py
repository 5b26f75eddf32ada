"""The dashboard's actions through AppTest: what the page shows and what the registry holds after.

Also the proof that a page test can fail: an exception injected into a page's reads, which the
page turns into an `st.error`, makes `check_page` raise.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.ui import NO_CANARY
from db.engine import session_scope
from db.queries.review import ReviewFilter, review_page
from db.repo.channels import get_channel
from db.repo.feedback import annotation_history
from db.repo.jobs import JobInfo, JobRequest, get_job, insert_job, list_jobs
from tests.dashboard_fixtures import FilledRegistry, filled_registry_fixture  # noqa: F401
from tests.page_helpers import (  # noqa: F401
    APP,
    audit_rows,
    check_page,
    fresh_caches,
    open_page,
    texts,
)

# Every page the router lists, so that a new page is covered without editing this file.
PAGES = re.findall(r'st\.Page\(\s*"views/(\w+)\.py"', Path(APP).read_text())


def _injected(*_args, **_kwargs):
    raise RuntimeError("injected failure")


def test_an_exception_in_a_query_fails_the_page_test(filled_registry, monkeypatch):
    open_page("feedback")  # the control: the page is clean without the fault
    monkeypatch.setattr("db.queries.review.review_page", _injected)
    with pytest.raises(AssertionError, match="injected failure"):
        open_page("feedback")


def test_the_router_lists_the_pages():
    assert {"overview", "models", "channels", "retrain", "jobs", "feedback"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_test_fails_when_the_page_cannot_read(filled_registry, monkeypatch, page):
    """Each page renders cleanly; when its reads fail it catches the failure and draws a
    message, and the page check still fails."""
    open_page(page)
    monkeypatch.setattr("dashboard.ui.read", _injected)
    monkeypatch.setattr("dashboard.ui.read_fresh", _injected)
    with pytest.raises(AssertionError, match="injected failure"):
        open_page(page)


def test_check_page_accepts_only_the_errors_named():
    at = AppTest.from_string('import streamlit as st\nst.error("slug must be short")')
    at.run()
    check_page(at, expected=["slug must be"])
    with pytest.raises(AssertionError, match="did not expect"):
        check_page(at)
    with pytest.raises(AssertionError, match="expected errors not shown"):
        check_page(at, expected=["slug must be", "name is required"])


def _channel(slug: str):
    with session_scope() as s:
        return get_channel(session=s, slug=slug)


def _timeline(at: AppTest, actor: str) -> list[str]:
    """The channel history lines that name `actor`, newest first, as the page lists them."""
    return [m.value for m in at.markdown if f"**{actor}**" in m.value]


def test_promote_serves_the_version_and_joins_the_timeline(filled_registry: FilledRegistry):
    v1, v2 = filled_registry.version_ids[:2]
    assert _channel("partner-api").production_version_id == v1
    at = open_page("channels", user="hana", channel="partner-api")
    check_page(at.selectbox(key="ch_promote").set_value(v2).run())
    check_page(at.button(key="ch_promote_go").click().run())
    assert _channel("partner-api").production_version_id == v2
    production = [p.proto.label for p in at.get("page_link") if "Production" in p.proto.label]
    assert len(production) == 1 and production[0].startswith("Production: digits v2")
    rows = audit_rows("hana", object_type="channel")
    assert [(r.action, r.object_id) for r in rows] == [("channel.promote", "partner-api")]
    assert (rows[0].details["before"], rows[0].details["after"]) == (v1, v2)
    lines = _timeline(at, "hana")
    assert len(lines) == 1 and "channel.promote" in lines[0]


def test_the_serving_form_starts_from_what_the_channel_serves(filled_registry: FilledRegistry):
    """Web runs a canary of v1 at 10 %: the form shows it, so pressing the button unchanged
    cannot end it by accident; choosing none offers to end it; another channel starts afresh."""
    v1 = filled_registry.version_ids[0]
    at = check_page(open_page("channels", user="hana", channel="web"))
    assert (at.selectbox(key="ch_candidate").value, at.number_input(key="ch_share").value) == (
        v1,
        10,
    )
    button = at.button(key="ch_candidate_go")
    assert button.disabled and button.label == "Set candidate"
    at.number_input(key="ch_share").set_value(20)
    assert not check_page(at.run()).button(key="ch_candidate_go").disabled  # a new share
    at.selectbox(key="ch_candidate").set_value(NO_CANARY)
    button = check_page(at.run()).button(key="ch_candidate_go")
    assert not button.disabled and button.label == "End canary"
    at.selectbox(key="ch_select").set_value("mobile")
    check_page(at.run())
    assert at.selectbox(key="ch_candidate").value == NO_CANARY  # mobile runs no canary
    assert at.number_input(key="ch_share").value == 10
    assert at.button(key="ch_candidate_go").disabled
    assert _channel("web").candidate_version_id == v1  # nothing pressed, nothing changed


def test_canary_is_set_then_ended_and_both_are_on_the_timeline(filled_registry: FilledRegistry):
    v1 = filled_registry.version_ids[0]
    at = open_page("channels", user="ines", channel="mobile")
    at.selectbox(key="ch_candidate").set_value(v1)
    at.number_input(key="ch_share").set_value(25)
    check_page(at.run(), expected=["The gate refuses this canary"])  # v1 is worse than v2
    at.text_input(key="ch_gc_override").set_value("the older version on purpose").run()
    check_page(at.button(key="ch_candidate_go").click().run())
    mobile = _channel("mobile")
    assert (mobile.candidate_version_id, mobile.candidate_traffic) == (v1, 0.25)
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["Mobile app", "candidate"].endswith("(25% of traffic)")

    check_page(at.selectbox(key="ch_candidate").set_value(NO_CANARY).run())
    assert at.button(key="ch_candidate_go").label == "End canary"
    check_page(at.button(key="ch_candidate_go").click().run())
    assert _channel("mobile").candidate_version_id is None
    assert at.dataframe[0].value.set_index("name").loc["Mobile app", "candidate"] == ""
    rows = audit_rows("ines", object_type="channel")
    assert [(r.action, r.object_id) for r in rows] == [
        ("channel.start_canary", "mobile"),
        ("channel.end_canary", "mobile"),
    ]
    canary = {"version_id": v1, "traffic": 0.25}
    assert rows[0].details["after"] == canary and rows[1].details["before"] == canary
    lines = _timeline(at, "ines")  # newest first
    assert len(lines) == 2
    assert "channel.end_canary" in lines[0] and "channel.start_canary" in lines[1]


def _queued_job(reg: FilledRegistry) -> int:
    with session_scope() as s:
        job = insert_job(
            session=s,
            request=JobRequest(
                model_id=reg.model_id,
                dataset_id=reg.dataset_id,
                architecture="seed-cnn",
                hyperparameters={"epochs": 2},
                requested_by="alice",
                note="to be cancelled",
            ),
        )
    return job.id


def test_cancelling_a_queued_job(filled_registry: FilledRegistry):
    job_id = _queued_job(filled_registry)
    at = open_page("jobs", user="jules", job=job_id)
    assert any("queued" in m.value for m in at.markdown)
    at.button(key="job_cancel").click().run()
    check_page(at, expected=["cancelled"])  # a cancelled job is shown as a failure to retry
    assert not [b for b in at.button if b.key == "job_cancel"]
    with session_scope() as s:
        job = get_job(session=s, job_id=job_id)
    assert (job.status, job.cancel_requested) == ("cancelled", True)
    rows = audit_rows("jules", object_type="job")
    assert [(r.action, r.object_id) for r in rows] == [("job.cancel", str(job_id))]
    assert (rows[0].details["before"], rows[0].details["after"]) == ("queued", "cancelled")


def _pending_by_confidence() -> list[tuple[float, int]]:
    with session_scope() as s:
        rows, total = review_page(session=s, filters=ReviewFilter(), page_size=10_000)
    assert len(rows) == total
    return sorted((r.confidence, r.id) for r in rows)


def test_uncertainty_sort_reviews_the_least_confident_item_first(filled_registry):
    expected = _pending_by_confidence()
    at = open_page("feedback", user="kim")
    check_page(at.selectbox(key="fb_sort").set_value("least confident").run())
    shown = at.dataframe[0].value
    assert list(shown["id"]) == [i for _c, i in expected[:10]]
    assert list(shown["confidence"]) == sorted(shown["confidence"])
    least = expected[0][1]
    assert any(f"· feedback #{least}" in m.value for m in at.markdown)
    check_page(at.button(key="fb_confirm").click().run())
    with session_scope() as s:
        history = annotation_history(session=s, feedback_id=least)
    assert [(a.author, a.verdict) for a in history] == [("kim", "confirmed")]
    assert _pending_by_confidence()[0][1] == expected[1][1]
    assert any(f"· feedback #{expected[1][1]}" in m.value for m in at.markdown)


def _retrain_link(at: AppTest) -> dict[str, str]:
    links = [p.proto for p in at.get("page_link") if "Retrain with" in p.proto.label]
    assert len(links) == 1, [p.proto.label for p in at.get("page_link")]
    assert links[0].page.endswith("retrain.py") or "retrain" in links[0].page
    return {k: v[0] for k, v in parse_qs(links[0].query_string).items()}


def _queue(at: AppTest) -> JobInfo:
    at.button(key="FormSubmitter:retrain-Queue retrain").click().run()
    check_page(at)
    assert any("Queued job" in s.value for s in at.success)
    with session_scope() as s:
        return list_jobs(session=s, statuses=("queued",))[0]


def test_retrain_link_fine_tunes_what_the_chosen_channel_serves(filled_registry):
    mobile, v2 = filled_registry.channel_ids["mobile"], filled_registry.version_ids[1]
    at = open_page("feedback")
    check_page(at.selectbox(key="fb_channel").set_value(mobile).run())
    params = _retrain_link(at)
    assert params == {"include_feedback": "1", "channel": "mobile", "base": str(v2)}
    at = open_page("retrain", user="lena", **params)
    assert at.checkbox(key="rt_include_feedback").value is True
    assert (at.selectbox(key="rt_channel").value, at.selectbox(key="rt_base").value) == (mobile, v2)
    job = _queue(at)
    assert (job.requested_by, job.include_feedback) == ("lena", True)
    assert (job.channel_slug, job.base_version_id) == ("mobile", v2)


def test_retrain_link_applies_after_an_earlier_visit_to_retrain(filled_registry):
    """Issue 7: the prefill used to be applied once per browser session."""
    at = open_page("retrain", user="mona")
    assert at.checkbox(key="rt_include_feedback").value is False
    at.switch_page("views/feedback.py")
    check_page(at.run())
    params = _retrain_link(at)  # no channel chosen: the first channel that serves a version
    slug = params["channel"]
    assert params == {"include_feedback": "1", "channel": slug, "base": params["base"]}
    assert int(params["base"]) == _channel(slug).production_version_id
    at.switch_page("views/retrain.py")
    for name, value in params.items():
        at.query_params[name] = value
    check_page(at.run())
    assert at.checkbox(key="rt_include_feedback").value is True
    assert (at.selectbox(key="rt_channel").value, at.selectbox(key="rt_base").value) == (
        filled_registry.channel_ids[slug],
        int(params["base"]),
    )
    job = _queue(at)
    assert (job.requested_by, job.include_feedback, job.channel_slug) == ("mona", True, slug)
    assert job.base_version_id == int(params["base"])
