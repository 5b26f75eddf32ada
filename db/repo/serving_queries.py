"""Reads and writes the serving API needs: one snapshot of every channel's routing state, the
channel of a key (current, or previous within its grace period), and the keys' last use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from db.models import Channel, utcnow
from db.repo.channels import hash_api_key, key_matches_hash

# The API writes a key's last use at most this often (a dashboard needs no finer grain).
LAST_USE_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class ChannelRouting:
    """What the API needs to authenticate and route a channel's requests without a query each."""

    id: int
    slug: str
    status: str
    status_reason: str
    production_version_id: int | None
    candidate_version_id: int | None
    candidate_traffic: float
    api_key_hash: str | None
    previous_api_key_hash: str | None = None
    previous_key_expires_at: datetime | None = None
    rate_limit_per_s: float | None = None

    def accepts_key(self, key: str | None, now: datetime) -> bool:
        """The current key, or the previous one until its grace period ends."""
        if key_matches_hash(self.api_key_hash, key):
            return True
        expires = self.previous_key_expires_at
        return bool(
            expires is not None
            and now < expires
            and key_matches_hash(self.previous_api_key_hash, key)
        )


def _routing_columns() -> tuple:
    return (
        Channel.id,
        Channel.slug,
        Channel.status,
        Channel.status_reason,
        Channel.production_version_id,
        Channel.candidate_version_id,
        Channel.candidate_traffic,
        Channel.api_key_hash,
        Channel.previous_api_key_hash,
        Channel.previous_key_expires_at,
        Channel.rate_limit_per_s,
    )


def channel_routing(*, session: Session) -> list[ChannelRouting]:
    """Every channel's routing state in one query (polled by the API's model cache)."""
    rows = session.execute(select(*_routing_columns()).order_by(Channel.id))
    return [ChannelRouting(*row) for row in rows]


def channel_for_api_key(
    *, session: Session, key: str | None, now: datetime | None = None
) -> ChannelRouting | None:
    """The channel whose current key is `key`, or whose previous key it is and still in its
    grace period at `now`; None otherwise (keys are unique random strings)."""
    if not key:
        return None
    hashed = hash_api_key(key)
    query = select(*_routing_columns()).where(
        or_(Channel.api_key_hash == hashed, Channel.previous_api_key_hash == hashed)
    )
    now = now or utcnow()
    for row in session.execute(query):
        routing = ChannelRouting(*row)
        if routing.accepts_key(key, now):
            return routing
    return None


def record_key_use(*, session: Session, last_used: dict[int, datetime]) -> int:
    """Store when each channel's key was last used; a stored time less than a minute older
    is kept (so a busy key costs one write a minute). Returns the number of rows written."""
    written = 0
    for channel_id, at in last_used.items():
        result = session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .where(
                or_(
                    Channel.api_key_last_used_at.is_(None),
                    Channel.api_key_last_used_at <= at - LAST_USE_RESOLUTION,
                )
            )
            # updated_at kept: a key's use is not a change of the channel's settings
            .values(api_key_last_used_at=at, updated_at=Channel.updated_at)
            .execution_options(synchronize_session=False)
        )
        written += result.rowcount
    return written
