"""Reads the serving API needs on its hot path: one snapshot of every channel's routing state."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Channel
from db.repo.channels import hash_api_key


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
    )


def channel_routing(*, session: Session) -> list[ChannelRouting]:
    """Every channel's routing state in one query (polled by the API's model cache)."""
    rows = session.execute(select(*_routing_columns()).order_by(Channel.id))
    return [ChannelRouting(*row) for row in rows]


def channel_for_api_key(*, session: Session, key: str | None) -> ChannelRouting | None:
    """The channel whose current key is `key`, or None (keys are unique random strings)."""
    if not key:
        return None
    row = session.execute(
        select(*_routing_columns()).where(Channel.api_key_hash == hash_api_key(key))
    ).first()
    return ChannelRouting(*row) if row else None
