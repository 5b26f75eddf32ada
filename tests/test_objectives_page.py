"""Channels page: live objectives saved through the action (audited, validated) and open
alerts acknowledged by the person looking at them."""

from __future__ import annotations

from core.actions.alerts import open_alert
from core.actions.base import SYSTEM
from db.engine import session_scope
from db.queries.lookups import get_channel, list_alerts
from db.repo.channels import ChannelSpec, create_channel
from tests.page_helpers import audit_rows, check_page, fresh_caches, open_page  # noqa: F401
from tests.registry_helpers import add_dataset


def _channel() -> int:
    with session_scope() as s:
        add_dataset(s)
        return create_channel(session=s, slug="web", spec=ChannelSpec(name="Web", kind="web"))[0].id


def test_objectives_form_saves_through_the_action(registry):
    _channel()
    at = open_page("channels", user="olga", channel="web")
    at.number_input(key="obj_errors").set_value(2.5)
    at.number_input(key="obj_m").set_value(2)
    at.number_input(key="obj_n").set_value(4)
    at.text_input(key="obj_reason").set_value("partner contract")
    check_page(at.button(key="obj_save").click().run())
    with session_scope() as s:
        objectives = get_channel(session=s, slug="web").objectives
    assert objectives["slo_max_error_rate"] == 0.025
    assert (objectives["alert_m"], objectives["alert_n"]) == (2, 4)
    (row,) = audit_rows("olga", "channel")
    assert row.action == "channel.set_objectives" and row.details["reason"] == "partner contract"


def test_objectives_form_refuses_m_above_n_and_changes_nothing(registry):
    _channel()
    at = open_page("channels", user="olga", channel="web")
    at.number_input(key="obj_m").set_value(7)
    at.button(key="obj_save").click().run()
    check_page(at, expected=["alert_m must not exceed alert_n"])
    with session_scope() as s:
        assert get_channel(session=s, slug="web").objectives["alert_m"] == 3
    assert audit_rows("olga", "channel") == []


def test_open_alert_is_shown_and_acknowledged(registry):
    channel_id = _channel()
    open_alert(actor=SYSTEM, channel_id=channel_id, signal="drift",
               message="drift (PSI) above 0.20 in 3 of the last 5 buckets")  # fmt: skip
    at = open_page("channels", user="olga", channel="web")
    assert "drift (PSI) above 0.20 in 3 of the last 5 buckets" in [t.value for t in at.text]
    (alert,) = _alerts(channel_id)
    check_page(at.button(key=f"ack_{alert.id}").click().run())
    (alert,) = _alerts(channel_id)
    assert alert.acknowledged_by == "olga" and alert.is_open
    assert [r.action for r in audit_rows("olga", "channel")] == ["alert.acknowledge"]


def _alerts(channel_id: int):
    with session_scope() as s:
        return list_alerts(session=s, channel_id=channel_id)
