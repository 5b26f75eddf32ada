"""Signing in and out of the dashboard: password check, lock-out, sessions; every attempt audited.

A session is a random token (kept by the browser in a cookie) whose sha256 is stored with an
expiry; signing out or changing the user deletes the row, so the cookie stops working at once.
Sign-in is not an `@action`: no one is signed in yet to hold a role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.orm import Session

from core.actions.base import Actor, audit
from core.actions.users import hasher
from db.engine import session_scope
from db.errors import RegistryError
from db.models import User, utcnow
from db.repo import users as user_repo
from db.repo.users import UserInfo
from db.settings import settings

WRONG = "wrong user name or password"
# Verified for unknown names too, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = hasher.hash("not a password of anyone")


class SignInRefused(RegistryError):
    """Wrong name or password, a locked or a disabled account (the message says which)."""

    kind = "unauthorized"


@dataclass(frozen=True)
class SignedIn:
    token: str
    user: UserInfo
    expires_at: datetime


def _matches(stored_hash: str, password: str) -> bool:
    try:
        return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _fail(session: Session, user: User, now: datetime) -> str:
    """Count a wrong password; the Nth in a row locks the account for a while."""
    config = settings()
    user.failed_attempts += 1
    audit(session, Actor(user.name, user.role), "user.sign_in_failed", "user", user.name,
          reason="wrong password", failed_attempts=user.failed_attempts)  # fmt: skip
    if user.failed_attempts < config.signin_attempts:
        return WRONG
    user.locked_until = now + timedelta(minutes=config.lockout_minutes)
    user.failed_attempts = 0
    audit(session, Actor(user.name, user.role), "user.lock", "user", user.name,
          until=user.locked_until.isoformat(), after_failures=config.signin_attempts)  # fmt: skip
    return f"{WRONG}; after {config.signin_attempts} failures the account is locked until " + (
        f"{user.locked_until:%H:%M} UTC"
    )


def _attempt(session: Session, name: str, password: str, now: datetime) -> SignedIn | str:
    """A session, or the message of a refusal (written before the caller raises it)."""
    user = user_repo.find_user(session=session, name=name)
    if user is None:
        _matches(_DUMMY_HASH, password)
        audit(session, Actor(name[:100] or "?", "viewer"), "user.sign_in_failed", "user",
              name[:64], reason="unknown user")  # fmt: skip
        return WRONG
    who = Actor(user.name, user.role)
    if user.locked_until is not None and user.locked_until > now:
        audit(session, who, "user.sign_in_failed", "user", user.name, reason="locked")
        until = f"{user.locked_until:%H:%M} UTC"
        return f"{user.name} is locked after repeated failed sign-ins until {until}"
    if not _matches(user.password_hash, password):
        return _fail(session, user, now)
    if user.disabled:
        audit(session, who, "user.sign_in_failed", "user", user.name, reason="disabled")
        return f"{user.name} is disabled: ask an admin"
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    user.failed_attempts, user.locked_until, user.last_sign_in_at = 0, None, now
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(hours=settings().session_hours)
    user_repo.create_session(session=session, user=user, token=token, expires_at=expires_at)
    audit(session, who, "user.sign_in", "user", user.name, expires_at=expires_at.isoformat())
    return SignedIn(token, user_repo.user_info(user), expires_at)


def sign_in(name: str, password: str, *, now: datetime | None = None) -> SignedIn:
    """A new session for `name`, or SignInRefused; the attempt is audited and counted either way."""
    with session_scope() as session:
        outcome = _attempt(session, (name or "").strip(), password or "", now or utcnow())
    if isinstance(outcome, str):
        raise SignInRefused(outcome)
    return outcome


def signed_in_user(token: str | None) -> UserInfo | None:
    """The user of a live session token (None: unknown, expired, signed out or disabled)."""
    if not token:
        return None
    with session_scope() as session:
        return user_repo.session_user(session=session, token=token)


def sign_out(token: str | None) -> None:
    """End the session of `token` (nothing happens for an unknown one)."""
    if not token:
        return
    with session_scope() as session:
        user = user_repo.end_session(session=session, token=token)
        if user is not None:
            audit(session, Actor(user.name, user.role), "user.sign_out", "user", user.name)
