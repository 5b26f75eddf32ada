"""Users and sign-in below the dashboard: argon2 hashes, sessions that expire and end, lock-out,
audited attempts, `channelhub user …`, private local state and `up` refusing an open host."""

from __future__ import annotations

import argparse
import io
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from core.actions import users as user_actions
from core.actions.base import SYSTEM, Actor, PermissionDenied
from core.actions.sign_in import SignInRefused, sign_in, sign_out, signed_in_user
from core.ops.cli import main
from db.engine import session_scope
from db.errors import ConflictError, RegistryError
from db.models import User, utcnow
from db.repo.audit import list_events

PASSWORD = "correct horse battery"


def add(name: str, role: str = "viewer", password: str = PASSWORD):
    return user_actions.add_user(actor=SYSTEM, name=name, role=role, password=password)


def events(object_id: str) -> list[tuple[str, str]]:
    with session_scope() as s:
        rows = list_events(session=s, object_type="user", object_id=object_id, limit=100)
    return [(e.action, e.details.get("reason", "")) for e in reversed(rows)]


def test_only_an_argon2_hash_is_stored_and_bad_input_is_refused(registry):
    add("ann")
    with session_scope() as s:
        stored = s.query(User).filter_by(name="ann").one().password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(ConflictError, match="already exists"):
        add("ann")
    with pytest.raises(RegistryError, match="at least 10 characters"):
        add("bob", password="short")
    with pytest.raises(RegistryError, match="role must be one of"):
        add("bob", role="owner")
    with pytest.raises(RegistryError, match="user name"):
        add("<b>bob</b>")
    with session_scope() as s:
        audit_text = str([e.details for e in list_events(session=s, limit=100)])
    assert PASSWORD not in audit_text


def test_sign_in_gives_a_session_that_expires_and_ends_on_sign_out(registry):
    add("ann", "annotator")
    session = sign_in("ann", PASSWORD)
    assert signed_in_user(session.token).role == "annotator"
    assert signed_in_user("not-a-token") is None
    later = sign_in("ann", PASSWORD, now=utcnow() - timedelta(hours=13))
    assert signed_in_user(later.token) is None, "a 12 h session from 13 h ago still works"
    sign_out(session.token)
    assert signed_in_user(session.token) is None
    assert [a for a, _ in events("ann")][-1] == "user.sign_out"


def test_wrong_passwords_lock_the_account_for_a_while(registry, monkeypatch):
    monkeypatch.setenv("CHANNELHUB_SIGNIN_ATTEMPTS", "3")
    add("ann")
    for _ in range(2):
        with pytest.raises(SignInRefused, match="^wrong user name or password$"):
            sign_in("ann", "not the password")
    with pytest.raises(SignInRefused, match="locked until"):
        sign_in("ann", "not the password")
    with pytest.raises(SignInRefused, match="ann is locked"):
        sign_in("ann", PASSWORD)  # the right password does not help while locked
    assert sign_in("ann", PASSWORD, now=utcnow() + timedelta(minutes=16)).user.name == "ann"
    assert events("ann")[-6:] == [
        ("user.sign_in_failed", "wrong password"),
        ("user.sign_in_failed", "wrong password"),
        ("user.sign_in_failed", "wrong password"),
        ("user.lock", ""),
        ("user.sign_in_failed", "locked"),
        ("user.sign_in", ""),
    ]


def test_unknown_and_disabled_users_cannot_sign_in(registry):
    add("ann", "admin")
    add("bob")
    session = sign_in("bob", PASSWORD)
    with pytest.raises(SignInRefused, match="wrong user name or password"):
        sign_in("nobody", PASSWORD)
    assert events("nobody") == [("user.sign_in_failed", "unknown user")]
    user_actions.disable_user(actor=Actor("ann", "admin"), name="bob", reason="left")
    assert signed_in_user(session.token) is None, "disabling kept bob's session"
    with pytest.raises(SignInRefused, match="disabled"):
        sign_in("bob", PASSWORD)
    user_actions.enable_user(actor=Actor("ann", "admin"), name="bob")
    assert sign_in("bob", PASSWORD)


def test_user_changes_are_admin_only_audited_and_keep_an_admin(registry):
    add("root", "admin")
    add("bob", "manager")
    with pytest.raises(PermissionDenied):
        user_actions.set_role(actor=Actor("bob", "manager"), name="bob", role="admin")
    admin = Actor("root", "admin")
    user_actions.set_role(actor=admin, name="bob", role="viewer", reason="moved team")
    session = sign_in("bob", PASSWORD)
    user_actions.set_password(actor=admin, name="bob", password="another long one")
    assert signed_in_user(session.token) is None, "a new password kept the old session"
    with pytest.raises(ConflictError, match="last enabled admin"):
        user_actions.disable_user(actor=admin, name="root")
    with pytest.raises(ConflictError, match="last enabled admin"):
        user_actions.set_role(actor=admin, name="root", role="manager")
    with session_scope() as s:
        (change,) = list_events(session=s, action="user.set_role", object_id="bob")
    assert (change.actor, change.details["before"], change.details["after"]) == (
        "root", {"role": "manager"}, {"role": "viewer"},
    )  # fmt: skip


def run(capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv))
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def test_user_commands(registry, capsys, monkeypatch):
    monkeypatch.setenv("CHANNELHUB_USER", "cli-root")
    code, out, _ = run(capsys, "user", "add", "ann", "--role", "manager", stdin=PASSWORD + "\n")
    assert code == 0 and "added ann (manager)" in out
    assert sign_in("ann", PASSWORD)
    code, out, _ = run(capsys, "user", "passwd", "ann", "--generate")
    assert code == 0
    new_password = out.split("(shown once): ")[1].split()[0]
    assert sign_in("ann", new_password)
    assert run(capsys, "user", "role", "ann", "annotator", "--reason", "r")[0] == 0
    assert run(capsys, "user", "disable", "ann")[0] == 0
    code, out, _ = run(capsys, "user", "list")
    assert code == 0 and "ann" in out and "annotator" in out and "disabled" in out
    code, _, err = run(capsys, "user", "add", "bob", "--role", "viewer", stdin="short\n")
    assert code == 2 and "at least 10 characters" in err
    actions = [a for a, _ in events("ann")]
    assert {"user.add", "user.set_password", "user.set_role", "user.disable"} <= set(actions)
    with session_scope() as s:
        assert list_events(session=s, action="user.add")[0].actor == "cli-root"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_registry_artifacts_and_demo_files_are_created_private(tmp_path, monkeypatch):
    from core.ops.demo_users import DEMO_USERS, ensure_demo_users, users_file
    from db.engine import dispose_engines, get_engine

    home = tmp_path / "fresh" / "var"
    monkeypatch.setenv("CHANNELHUB_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CHANNELHUB_ARTIFACTS", raising=False)
    dispose_engines()
    try:
        get_engine()
        made = ensure_demo_users()
    finally:
        dispose_engines()
    assert mode(home) == 0o700 and mode(home / "artifacts") == 0o700
    assert mode(home / "channelhub.db") == 0o600
    assert mode(users_file()) == 0o600
    assert set(made) == set(DEMO_USERS) and len(set(made.values())) == len(made)
    assert all(sign_in(name, password).user.role == DEMO_USERS[name] for name, password in
               made.items())  # fmt: skip
    dispose_engines()


def test_up_refuses_an_open_host_without_users(registry, capsys):
    from core.ops.launcher import run_up, sign_in_missing

    args = argparse.Namespace(host="0.0.0.0", api_port=1, dashboard_port=1, no_worker=True)
    assert run_up(args) == 2
    assert "no user can sign in" in capsys.readouterr().err
    assert sign_in_missing("127.0.0.1") is None
    add("ann", "admin")
    assert sign_in_missing("0.0.0.0") is None
