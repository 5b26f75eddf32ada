"""The promotion gate on the Channels page (AppTest): a worse version's refusal with its failed
rules and evidence before confirming, Promote disabled until a manager writes an override
reason, and the stored decision shown on the timeline."""

from __future__ import annotations

from db.engine import session_scope
from db.queries.lookups import get_channel, list_events
from db.repo.gate import get_gate_decision
from tests.page_helpers import check_page, fresh_caches, open_page, texts  # noqa: F401
from tests.test_gate import _channel


def test_promote_shows_the_gate_refusal_and_takes_an_override_reason(registry):
    ids = _channel(worse=30)
    at = open_page("channels", user="hana", role="manager", channel="web")
    at.selectbox(key="ch_promote").set_value(ids["worse"]).run()
    check_page(at, expected=["The gate refuses this promotion"])
    assert "holdout regression" in at.error[0].value
    assert "95.0%" in " ".join(str(t.value) for t in at.text)
    assert at.button(key="ch_promote_go").disabled
    at.text_input(key="ch_gp_override").set_value("hotfix for the cropped images").run()
    assert not at.button(key="ch_promote_go").disabled
    check_page(at.button(key="ch_promote_go").click().run())
    with session_scope() as s:
        assert get_channel(session=s, slug="web").production_version_id == ids["worse"]
        event = list_events(session=s, object_type="channel", action="channel.promote")[0]
        decision = get_gate_decision(session=s, decision_id=event.details["gate_decision_id"])
    assert event.actor == "hana"
    assert (decision.outcome, decision.override_reason) == (
        "overridden",
        "hotfix for the cropped images",
    )
    at = open_page("channels", user="hana", role="manager", channel="web")
    assert "override: hotfix for the cropped images" in texts(at)


def test_a_passing_candidate_shows_the_evidence_and_starts_its_canary(registry):
    ids = _channel(better=4)
    at = open_page("channels", user="hana", role="manager", channel="web")
    at.selectbox(key="ch_candidate").set_value(ids["better"]).run()
    check_page(at)
    assert any("The gate passes this canary" in s.value for s in at.success)
    check_page(at.button(key="ch_candidate_go").click().run())
    with session_scope() as s:
        assert get_channel(session=s, slug="web").candidate_version_id == ids["better"]
