"""Who may sign in: adding users, their passwords, roles and disabling them (admin, audited).

Passwords are hashed with argon2 (argon2-cffi's defaults) and never stored or audited."""

from __future__ import annotations

import re
import secrets

from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from core.actions.base import ROLES, Actor, action, audit
from db.errors import ConflictError, RegistryError
from db.repo import users as user_repo
from db.repo.users import UserInfo

MIN_PASSWORD_LENGTH = 10
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")

hasher = PasswordHasher()


def hash_password(password: str) -> str:
    check_password(password)
    return hasher.hash(password)


def check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise RegistryError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def random_password() -> str:
    """16 URL-safe characters (96 bits) for users created without one (the demo's)."""
    return secrets.token_urlsafe(12)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_PATTERN.fullmatch(name):
        raise RegistryError(
            "a user name is 1-100 letters, digits, '.', '_', '@' or '-', starting with a "
            f"letter or digit (got {name!r})"
        )
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise RegistryError(f"role must be one of {', '.join(ROLES)} (got {role!r})")
    return role


def _keep_an_admin(session: Session, user: user_repo.User, what: str) -> None:
    """Refuse a change that would leave no enabled admin to manage users."""
    if user.role != "admin" or user.disabled:
        return
    admins = [u for u in user_repo.list_users(session=session) if u.role == "admin"]
    if sum(not u.disabled for u in admins) <= 1:
        raise ConflictError(f"{user.name} is the last enabled admin: {what} would leave none")


@action("user.add", role="admin")
def add_user(*, session: Session, actor: Actor, name: str, role: str, password: str) -> UserInfo:
    """Add a user who signs in with `password` (stored only as an argon2 hash)."""
    info = user_repo.add_user(
        session=session,
        name=_check_name(name),
        password_hash=hash_password(password),
        role=_check_role(role),
    )
    audit(session, actor, "user.add", "user", info.name, after={"role": role})
    return info


@action("user.set_password", role="admin")
def set_password(*, session: Session, actor: Actor, name: str, password: str) -> UserInfo:
    """Give a user a new password; their open sessions end."""
    user = user_repo.user_row(session=session, name=name)
    user.password_hash = hash_password(password)
    user.failed_attempts, user.locked_until = 0, None
    ended = user_repo.end_user_sessions(session=session, user=user)
    audit(session, actor, "user.set_password", "user", name, sessions_ended=ended)
    return user_repo.user_info(user)


@action("user.set_role", role="admin")
def set_role(*, session: Session, actor: Actor, name: str, role: str, reason: str = "") -> UserInfo:
    """Change what a user may do (viewer < annotator < manager < admin)."""
    user = user_repo.user_row(session=session, name=name)
    before = user.role
    if _check_role(role) != "admin":
        _keep_an_admin(session, user, f"making them {role}")
    user.role = role
    audit(session, actor, "user.set_role", "user", name,
          before={"role": before}, after={"role": role}, reason=reason)  # fmt: skip
    return user_repo.user_info(user)


@action("user.disable", role="admin")
def disable_user(*, session: Session, actor: Actor, name: str, reason: str = "") -> UserInfo:
    """Stop a user from signing in; their open sessions end."""
    user = user_repo.user_row(session=session, name=name)
    _keep_an_admin(session, user, "disabling them")
    before = user.disabled
    user.disabled = True
    ended = user_repo.end_user_sessions(session=session, user=user)
    audit(session, actor, "user.disable", "user", name, before={"disabled": before},
          after={"disabled": True}, reason=reason, sessions_ended=ended)  # fmt: skip
    return user_repo.user_info(user)


@action("user.enable", role="admin")
def enable_user(*, session: Session, actor: Actor, name: str, reason: str = "") -> UserInfo:
    """Let a disabled or locked-out user sign in again."""
    user = user_repo.user_row(session=session, name=name)
    before = {"disabled": user.disabled, "locked_until": user.locked_until}
    user.disabled, user.failed_attempts, user.locked_until = False, 0, None
    audit(session, actor, "user.enable", "user", name,
          before={k: v if k == "disabled" else str(v) for k, v in before.items()},
          after={"disabled": False, "locked_until": None}, reason=reason)  # fmt: skip
    return user_repo.user_info(user)
