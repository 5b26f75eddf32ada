"""The Retrain page applies its query parameters whenever the page is entered with them or they
change, not once per browser session (issue 7, point 7), and the Feedback page's link carries
the channel and the version it serves."""

from __future__ import annotations

from urllib.parse import parse_qs

from streamlit.testing.v1 import AppTest

from dashboard import ui
from db.engine import session_scope
from db.repo.jobs import list_jobs
from tests.dashboard_fixtures import FilledRegistry, filled_registry_fixture  # noqa: F401
from tests.page_helpers import APP, check_page, fresh_caches, sign_in_as  # noqa: F401


def _visit(at: AppTest, page: str, **params: object) -> AppTest:
    """Follow a link to `views/<page>.py` with `params` (the old page's query is dropped)."""
    at.query_params.clear()
    at.query_params.update({name: str(value) for name, value in params.items()})
    at.switch_page(f"views/{page}.py")
    return check_page(at.run())


def _session(user: str = "mia") -> AppTest:
    at = sign_in_as(AppTest.from_file(APP, default_timeout=60), user)
    return check_page(at.run())


def _feedback_link(at: AppTest) -> dict[str, str]:
    (link,) = [p.proto for p in at.get("page_link") if "Retrain with" in p.proto.label]
    assert link.page == "retrain"
    return {name: values[0] for name, values in parse_qs(link.query_string).items()}


def test_feedback_link_after_an_earlier_visit_prefills_the_form(filled_registry: FilledRegistry):
    partner, v1 = filled_registry.channel_ids["partner-api"], filled_registry.version_ids[0]
    at = _visit(_session(), "retrain")
    assert at.checkbox(key="rt_include_feedback").value is False
    assert at.selectbox(key="rt_channel").value == ui.NOTHING  # "—": no channel
    at = _visit(at, "feedback")
    check_page(at.selectbox(key="fb_channel").set_value(partner).run())
    params = _feedback_link(at)
    # partner-api serves the first version; its slug and that version travel with the link.
    assert params == {
        "include_feedback": "1",
        "channel": "partner-api",
        "base": str(v1),
    }
    at = _visit(at, "retrain", **params)
    assert at.checkbox(key="rt_include_feedback").value is True
    assert at.selectbox(key="rt_channel").value == partner
    assert at.selectbox(key="rt_base").value == v1
    assert at.selectbox(key="rt_architecture").value == "seed-cnn"
    at.button(key="FormSubmitter:retrain-Queue retrain").click().run()
    check_page(at)
    with session_scope() as s:
        job = list_jobs(session=s, statuses=("queued",))[0]
    assert (job.requested_by, job.include_feedback) == ("mia", True)
    assert (job.channel_slug, job.base_version_id) == ("partner-api", v1)


def test_own_reruns_keep_edits_and_a_second_visit_applies_the_link_again(
    filled_registry: FilledRegistry,
):
    at = _visit(_session(), "retrain", include_feedback=1, channel="web")
    assert at.checkbox(key="rt_include_feedback").value is True
    assert at.selectbox(key="rt_base").value == filled_registry.version_ids[1]
    # Reruns of the page (the query still in the address bar) keep what the manager changed.
    check_page(at.selectbox(key="rt_base").set_value(ui.NOTHING).run())
    at.checkbox(key="rt_include_feedback").uncheck()
    at.button(key="FormSubmitter:retrain-Queue retrain").click().run()
    check_page(at)
    assert at.checkbox(key="rt_include_feedback").value is False
    assert at.selectbox(key="rt_base").value == ui.NOTHING  # from scratch
    with session_scope() as s:
        job = list_jobs(session=s, statuses=("queued",))[0]
    assert (job.include_feedback, job.base_version_id) == (False, None)
    at = _visit(at, "jobs")
    at = _visit(at, "retrain", include_feedback=1, channel="web")
    assert at.checkbox(key="rt_include_feedback").value is True
    assert at.selectbox(key="rt_base").value == filled_registry.version_ids[1]


def test_unknown_channel_and_version_in_the_link_are_a_warning(filled_registry: FilledRegistry):
    at = _visit(_session(), "retrain", channel="nope", base=99999)
    warnings = [w.value for w in at.warning]
    assert any("no channel 'nope'" in w for w in warnings), warnings
    assert any("Version id 99999 does not exist" in w for w in warnings), warnings
    assert at.selectbox(key="rt_channel").value == ui.NOTHING  # "—": no channel
