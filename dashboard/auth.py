"""Dashboard sign-in: who is signed in, the sign-in form, signing out.

A sign-in creates a server-side session (core.actions.sign_in): a random token whose sha256 is
stored with an expiry. The browser keeps the token in a `SameSite=Strict` cookie, set by a
line of JavaScript because Streamlit can read cookies (`st.context.cookies`) but not set them;
a page reload reconnects with the cookie and finds the session again. Signing out deletes the
server row (the cookie is dead at once) and clears the cookie."""

from __future__ import annotations

import streamlit as st

from core.actions.base import Actor
from core.actions.sign_in import SignInRefused, sign_in, sign_out, signed_in_user
from db.engine import session_scope
from db.queries.users import UserInfo, count_enabled_users
from db.settings import settings

COOKIE = "channelhub_session"
TOKEN = "session_token"  # session_state key of this browser tab's token
USER = "signed_in_user"  # session_state key of the UserInfo resolved on this run
ADD_FIRST_USER = "channelhub user add NAME --role admin"


def _browser_token() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no browser connection (AppTest, bare scripts)
        return None
    return value if isinstance(value, str) and value else None


def signed_in() -> UserInfo | None:
    """The signed-in user of this run (the session is checked on every run, so a disabled user
    or an ended session is signed out at the next click), else None."""
    token = st.session_state.get(TOKEN) or _browser_token()
    user = signed_in_user(token)
    if user is None:
        st.session_state.pop(TOKEN, None)
        st.session_state.pop(USER, None)
        return None
    st.session_state[TOKEN] = token
    st.session_state[USER] = user
    return user


def current_actor() -> Actor:
    """The signed-in user as the actor of a change; the router lets no page run without one."""
    user = st.session_state.get(USER)
    if user is None:
        st.error("You are not signed in.")
        st.stop()
    return Actor(user.name, user.role)


def _cookie_script(value: str, max_age: int) -> None:
    # The token is URL-safe base64: nothing in it can end the string or the script.
    st.html(
        "<script>document.cookie = "
        f"'{COOKIE}={value}; path=/; max-age={max_age}; SameSite=Strict'"
        " + (location.protocol === 'https:' ? '; Secure' : '');</script>",
        unsafe_allow_javascript=True,
    )


def keep_cookie() -> None:
    """Store this tab's token in the browser so that a reload stays signed in."""
    token = st.session_state.get(TOKEN)
    if token and token != _browser_token():
        _cookie_script(token, int(settings().session_hours * 3600))


def sign_in_page() -> None:
    """The only page a signed-out visitor sees."""
    st.title("Sign in to ChannelHub")
    if st.session_state.pop("signed_out", False):
        _cookie_script("", 0)
        st.success("You are signed out.")
    if not _has_users():
        st.info(f"No one can sign in yet. Create the first user on the server: `{ADD_FIRST_USER}`")
        return
    with st.form("sign_in"):
        name = st.text_input("User name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            session = sign_in(name, password)
        except SignInRefused as exc:
            st.error(str(exc))
            return
        st.session_state[TOKEN] = session.token
        st.rerun()


def _has_users() -> bool:
    with session_scope() as s:
        return count_enabled_users(session=s) > 0


def user_sidebar(user: UserInfo) -> None:
    """Who is signed in, with what role, and the sign-out button."""
    with st.sidebar:
        st.text(f"Signed in as {user.name}")
        st.caption(f"Role: {user.role}")
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            sign_out(st.session_state.pop(TOKEN, None))
            st.session_state.pop(USER, None)
            st.session_state["signed_out"] = True
            st.rerun()
        keep_cookie()
