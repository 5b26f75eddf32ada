"""The dashboard with AppTest: nothing but sign-in until a real sign-in, sign-out ends the
session, and each role sees what it may do (disabled with the reason, or not offered)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.actions.base import SYSTEM
from core.actions.sign_in import signed_in_user
from core.actions.users import add_user
from dashboard.auth import TOKEN
from db.engine import session_scope
from db.queries.lookups import get_channel
from tests.dashboard_fixtures import FilledRegistry, filled_registry_fixture  # noqa: F401
from tests.page_helpers import APP, audit_rows, check_page, fresh_caches, open_page  # noqa: F401

PASSWORD = "a long enough password"


def signed_out() -> AppTest:
    return check_page(AppTest.from_file(APP, default_timeout=60).run())


def sidebar_text(at: AppTest) -> str:
    return "\n".join(t.value for t in at.sidebar.text) + "\n".join(
        c.value for c in at.sidebar.caption
    )


def test_without_users_the_page_says_how_to_add_one(registry):
    at = signed_out()
    assert at.title[0].value == "Sign in to ChannelHub"
    assert "channelhub user add NAME --role admin" in at.info[0].value
    assert not at.text_input, "a sign-in form with no one to sign in"


def test_sign_in_then_sign_out(registry):
    add_user(actor=SYSTEM, name="ann", role="annotator", password=PASSWORD)
    at = signed_out()
    at.text_input(key="sign_in_name").input("ann")
    at.text_input(key="sign_in_password").input("wrong password!")
    check_page(at.button[0].click().run(), expected=["wrong user name or password"])
    at.text_input(key="sign_in_password").input(PASSWORD)
    check_page(at.button[0].click().run())
    assert "Signed in as ann" in sidebar_text(at) and "annotator" in sidebar_text(at)
    token = at.session_state[TOKEN]
    assert signed_in_user(token).name == "ann"
    check_page(at.button(key="sign_out").click().run())
    assert at.title[0].value == "Sign in to ChannelHub"
    assert signed_in_user(token) is None, "signing out left the session alive"
    actions = [r.action for r in audit_rows("ann", object_type="user")]
    assert actions == ["user.sign_in_failed", "user.sign_in", "user.sign_out"]


def test_a_viewer_sees_promote_disabled_with_the_reason(filled_registry: FilledRegistry):
    v2 = filled_registry.version_ids[1]
    at = open_page("channels", user="vera", role="viewer", channel="partner-api")
    at.selectbox(key="ch_promote").set_value(v2)
    check_page(at.run())
    promote = at.button(key="ch_promote_go")
    assert promote.disabled and "Needs the manager role" in promote.help
    assert "vera (viewer)" in promote.help
    assert at.button(key="ch_save").disabled
    with session_scope() as s:
        assert get_channel(session=s, slug="partner-api").production_version_id != v2


def test_a_manager_may_promote_but_not_rotate_keys(filled_registry: FilledRegistry):
    at = open_page("channels", user="mona", role="manager", channel="partner-api")
    at.selectbox(key="ch_promote").set_value(filled_registry.version_ids[1])
    check_page(at.run())
    assert not at.button(key="ch_promote_go").disabled and not at.button(key="ch_save").disabled
    assert at.button(key="ch_rotate").disabled, "a manager may rotate an API key (admin only)"


@pytest.mark.parametrize(("role", "may_review"), [("viewer", False), ("annotator", True)])
def test_the_review_form_is_offered_to_annotators_only(
    filled_registry: FilledRegistry, role: str, may_review: bool
):
    at = open_page("feedback", user=f"rev-{role}", role=role)
    keys = {b.key for b in at.button}
    assert ("fb_confirm" in keys) is may_review
    notes = " ".join(c.value for c in at.caption)
    assert ("Needs the annotator role" in notes) is not may_review


@pytest.mark.parametrize(("role", "may_read"), [("annotator", False), ("manager", True)])
def test_the_audit_page_is_for_managers(filled_registry: FilledRegistry, role, may_read):
    at = open_page("audit", user=f"aud-{role}", role=role)
    assert bool(at.dataframe) is may_read
    if may_read:
        (table,) = at.dataframe
        assert "user.sign_in" in set(table.value["action"])
