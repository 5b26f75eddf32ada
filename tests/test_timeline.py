"""The channel timeline (serving changes and canary decisions, newest first) and restoring an
earlier version from it in one step: through the action, the CLI and the Channels page."""

from __future__ import annotations

import pytest

from core.actions.canary import decide_canary, restore_version, start_canary_plan
from core.ops.cli import main
from db.engine import session_scope
from db.errors import ConflictError, RegistryError
from db.queries.timeline import channel_timeline, served_versions
from db.repo.audit import list_events
from db.repo.canary import get_canary
from db.repo.channels import get_channel
from tests.canary_helpers import channel_with_versions
from tests.page_helpers import check_page, fresh_caches, open_page, texts  # noqa: F401


def _timeline():
    with session_scope() as s:
        return channel_timeline(session=s, slug="web")


def _channel():
    with session_scope() as s:
        return get_channel(session=s, slug="web")


def _promote_through_canary(version_id: int) -> int:
    """A two-step canary decided by hand by a manager: advance, then promote."""
    canary = start_canary_plan(actor="alice", slug="web", version_id=version_id,
                               steps="50,100", reason="new model")  # fmt: skip
    decide_canary(actor="alice", canary_id=canary.id, step_index=0, decision="advance",
                  reason="looks fine")  # fmt: skip
    decide_canary(actor="alice", canary_id=canary.id, step_index=1, decision="promote",
                  reason="all good")  # fmt: skip
    return canary.id


def test_timeline_lists_serving_changes_and_decisions_newest_first(registry):
    _, (v1, v2, _) = channel_with_versions()
    _promote_through_canary(v2)
    entries = _timeline()
    assert [e.action for e in entries][:3] == ["canary.promote", "channel.promote",
                                               "canary.advance"]  # fmt: skip
    assert entries[0].reason == "all good" and entries[0].production_version_id == v2
    assert entries[-1].action == "channel.promote" and entries[-1].production_version_id == v1
    assert any(e.action == "canary.start" and "50 → 100 %" in e.title for e in entries)
    assert any(e.action == "channel.start_canary" and "50%" in e.title for e in entries)
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)
    with session_scope() as s:
        assert served_versions(session=s, slug="web") == {v1, v2}


def test_the_production_version_is_not_promoted_again_nor_put_in_a_canary(registry):
    """Both would change nothing but the trail: the timeline would show a second promotion and
    the Loop's "production since" would move to it."""
    from core.actions.channels import promote_version, start_canary

    _, (v1, _, _) = channel_with_versions()
    before = _timeline()
    with pytest.raises(ConflictError, match="already serves 'web' in production"):
        promote_version(actor="alice", slug="web", version_id=v1, reason="again")
    with pytest.raises(ConflictError, match="already serves 'web' in production"):
        start_canary(actor="alice", slug="web", version_id=v1, traffic=0.5)
    assert _timeline() == before
    channel = _channel()
    assert (channel.production_version_id, channel.candidate_version_id) == (v1, None)


def test_restore_an_earlier_version_in_one_step(registry):
    _, (v1, v2, v3) = channel_with_versions()
    _promote_through_canary(v2)
    with pytest.raises(RegistryError, match="needs a reason"):
        restore_version(actor="bob", slug="web", version_id=v1, reason="  ")
    with pytest.raises(ConflictError, match="never served"):
        restore_version(actor="bob", slug="web", version_id=v3, reason="try")
    with pytest.raises(ConflictError, match="already serves"):
        restore_version(actor="bob", slug="web", version_id=v2, reason="no-op")
    # A canary of v3 is running when v1 is restored: it ends, and its plan is closed.
    canary = start_canary_plan(actor="alice", slug="web", version_id=v3)
    restore_version(actor="bob", slug="web", version_id=v1, reason="v2 misreads sevens")
    channel = _channel()
    assert (channel.production_version_id, channel.candidate_version_id) == (v1, None)
    with session_scope() as s:
        assert get_canary(session=s, canary_id=canary.id).status == "rolled_back"
        event = list_events(session=s, object_type="channel", action="channel.restore")[0]
    assert (event.actor, event.details["before"], event.details["after"]) == ("bob", v2, v1)
    assert event.details["reason"] == "v2 misreads sevens"
    assert event.details["ended_canary"]["version_id"] == v3
    top = _timeline()[0]
    assert top.action == "channel.restore" and top.reason == "v2 misreads sevens"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_canary_and_timeline_commands(registry, capsys, monkeypatch):
    monkeypatch.setenv("CHANNELHUB_USER", "cli-dan")
    _, (v1, v2, _) = channel_with_versions()
    code, out, _ = run(capsys, "canary", "start", "web", "--version-id", str(v2), "--steps",
                       "20,100", "--min-requests", "50", "--min-minutes", "2")  # fmt: skip
    assert code == 0 and "20 → 100 %" in out and "50 requests" in out and "2 min" in out
    code, out, _ = run(capsys, "canary", "status", "web")
    assert code == 0 and "step 1 of 2 (20 %)" in out
    assert "now: hold — waiting for candidate 0 of 50 requests" in out
    code, out, _ = run(capsys, "canary", "decide", "web")  # the judge, recorded by hand
    assert code == 0 and "canary hold" in out
    code, out, _ = run(capsys, "canary", "decide", "web", "--decision", "rollback",
                       "--reason", "not today")  # fmt: skip
    assert code == 0 and "rollback" in out and _channel().candidate_version_id is None
    code, _, err = run(capsys, "canary", "decide", "web")
    assert code == 2 and "no stepped canary running" in err
    code, _, err = run(capsys, "canary", "start", "web", "--version-id", str(v2), "--steps", "x")
    assert code == 2 and "must be numbers" in err
    code, out, _ = run(capsys, "channel", "timeline", "web")
    assert code == 0 and "canary rollback" in out and "not today" in out
    with session_scope() as s:
        actors = {e.actor for e in list_events(session=s, object_type="channel")}
    assert "cli-dan" in actors
    code, _, err = run(capsys, "channel", "restore", "web", "--version-id", str(v2),
                       "--reason", "x")  # fmt: skip
    assert code == 2 and "never served" in err


def test_channels_page_shows_the_timeline_and_restores_with_one_click(registry):
    _, (v1, v2, _) = channel_with_versions()
    _promote_through_canary(v2)
    at = open_page("channels", user="hana", channel="web")
    shown = texts(at)
    assert "canary promote" in shown and "all good" in shown
    assert [b.key for b in at.button if b.key.startswith("tl_restore_")] == [f"tl_restore_{v1}"]
    check_page(at.button(key=f"tl_restore_{v1}").click().run(), expected=["needs a reason"])
    assert _channel().production_version_id == v2
    at.text_input(key="tl_reason").set_value("back to v1")
    check_page(at.button(key=f"tl_restore_{v1}").click().run())
    assert _channel().production_version_id == v1
    with session_scope() as s:
        event = list_events(session=s, object_type="channel", action="channel.restore")[0]
    assert (event.actor, event.details["reason"]) == ("hana", "back to v1")
