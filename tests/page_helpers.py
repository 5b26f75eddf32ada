"""Driving dashboard pages with AppTest so that a crash cannot pass unseen.

Every page catches its exceptions and draws `st.error`, so `at.exception` stays empty when a
page breaks; `check_page` also fails on any error element the test did not name in `expected`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db.engine import session_scope
from db.repo.audit import AuditEntry, list_events

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def check_page(at: AppTest, *, expected: Iterable[str] = ()) -> AppTest:
    """Fail on an uncaught exception, on an error element whose text contains none of the
    `expected` substrings, and on an `expected` substring that no error element shows."""
    assert not at.exception, [e.value for e in at.exception]
    wanted = tuple(expected)
    errors = [str(e.value) for e in at.error]
    unexpected = [text for text in errors if not any(w in text for w in wanted)]
    assert not unexpected, f"the page shows errors the test did not expect: {unexpected}"
    missing = [w for w in wanted if not any(w in text for text in errors)]
    assert not missing, f"expected errors not shown: {missing}; shown: {errors}"
    return at


TEST_PASSWORD = "page-test-password"


def session_token(user: str, role: str = "admin") -> str:
    """A live sign-in of `user` (created with `role` if new; an existing user keeps theirs),
    made through the real sign-in."""
    from core.actions.base import SYSTEM
    from core.actions.sign_in import sign_in
    from core.actions.users import add_user
    from db.queries.users import list_users

    with session_scope() as s:
        known = {u.name for u in list_users(session=s)}
    if user not in known:
        add_user(actor=SYSTEM, name=user, role=role, password=TEST_PASSWORD)
    return sign_in(user, TEST_PASSWORD).token


def sign_in_as(at: AppTest, user: str, role: str = "admin") -> AppTest:
    """Make the next run of `at` that of `user` signed in with `role`."""
    from dashboard.auth import TOKEN

    at.session_state[TOKEN] = session_token(user, role)
    return at


def open_page(
    page: str,
    user: str = "carol",
    *,
    role: str = "admin",
    expected: Iterable[str] = (),
    **params: object,
) -> AppTest:
    """Start from the entry file signed in as `user` (a real user with `role`), switch to
    `views/<page>.py` with query `params` and check it (see `check_page`)."""
    at = sign_in_as(AppTest.from_file(APP, default_timeout=60), user, role)
    at.run()
    check_page(at)
    at.switch_page(f"views/{page}.py")
    for name, value in params.items():
        at.query_params[name] = str(value)
    at.run()
    return check_page(at, expected=expected)


def texts(at: AppTest) -> str:
    """The page's markdown, subheaders, captions and metrics as one string."""
    parts = [m.value for m in at.markdown] + [m.value for m in at.subheader]
    parts += [m.value for m in at.caption] + [f"{m.label}: {m.value}" for m in at.metric]
    return "\n".join(parts)


def audit_rows(actor: str, object_type: str | None = None) -> list[AuditEntry]:
    """The audit rows `actor` left, oldest first (tests give each actor a unique name)."""
    with session_scope() as s:
        rows = list_events(session=s, object_type=object_type, limit=1000)
    return [r for r in reversed(rows) if r.actor == actor]


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Drop the dashboard's cached reads so each test sees its own registry (autouse in every
    module that imports it)."""
    import streamlit as st

    st.cache_data.clear()
    yield
