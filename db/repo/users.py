"""Users who sign in and their browser sessions. Hashing and the rules (lock-out, who may change
whom) live in core.actions; this module only reads and writes rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.errors import ConflictError, NotFoundError
from db.models import User, UserSession, utcnow
from db.repo.rows import info_of


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    last_sign_in_at: datetime | None

    def locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or utcnow())


def _info(user: User) -> UserInfo:
    return info_of(UserInfo, user)


def token_hash(token: str) -> str:
    """Sessions are stored by the sha256 of their token: a copy of the database signs no one in."""
    return hashlib.sha256(token.encode()).hexdigest()


def user_row(*, session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFoundError(f"no user named {name!r}")
    return user


def find_user(*, session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def get_user(*, session: Session, name: str) -> UserInfo:
    return _info(user_row(session=session, name=name))


def add_user(*, session: Session, name: str, password_hash: str, role: str) -> UserInfo:
    if find_user(session=session, name=name) is not None:
        raise ConflictError(f"a user named {name!r} already exists")
    user = User(name=name, password_hash=password_hash, role=role)
    session.add(user)
    session.flush()
    return _info(user)


def list_users(*, session: Session) -> list[UserInfo]:
    return [_info(u) for u in session.scalars(select(User).order_by(User.name))]


def count_enabled_users(*, session: Session) -> int:
    return session.scalar(select(func.count(User.id)).where(User.disabled.is_(False))) or 0


def user_info(user: User) -> UserInfo:
    """The plain view of a row the caller holds."""
    return _info(user)


def create_session(*, session: Session, user: User, token: str, expires_at: datetime) -> None:
    session.add(UserSession(token_hash=token_hash(token), user_id=user.id, expires_at=expires_at))


def session_user(*, session: Session, token: str, now: datetime | None = None) -> UserInfo | None:
    """The enabled user a live session token belongs to, else None."""
    row = session.execute(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.token_hash == token_hash(token))
        .where(UserSession.expires_at > (now or utcnow()))
        .where(User.disabled.is_(False))
    ).scalar_one_or_none()
    return None if row is None else _info(row)


def end_session(*, session: Session, token: str) -> UserInfo | None:
    """Delete one session; the user it belonged to, or None when it was unknown."""
    row = session.scalar(select(UserSession).where(UserSession.token_hash == token_hash(token)))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    session.delete(row)
    return None if user is None else _info(user)


def end_user_sessions(*, session: Session, user: User) -> int:
    """Sign a user out everywhere (password change, disabling); how many sessions ended."""
    done = session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    return done.rowcount or 0
