"""What a route needs, written once as typed dependencies: the services, the session, the API key
and the channel it opens."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from core.serving.keys import retry_after_header
from core.serving.model_cache import ChannelState
from core.serving.services import Services
from db.engine import session_scope
from db.models import utcnow
from db.repo.channels import hash_api_key
from db.repo.serving_queries import ChannelRouting

MISSING_KEY = "missing API key: send it in the X-API-Key header"


async def get_services(request: Request) -> Services:
    """The process's services, started by the app's lifespan."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One unit of work per request: committed when the route returns, rolled back if it raises."""
    with session_scope(services.database_url) as session:
        yield session


# scope="function": the commit happens before the answer is sent, so a 2xx means it is stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def api_key(request: Request) -> str:
    """The key from `X-API-Key`, or from `Authorization: Bearer <key>`; 401 when there is none."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise HTTPException(401, MISSING_KEY)
    return key


ApiKeyDep = Annotated[str, Depends(api_key)]


def admit(request: Request, services: Services, routing: ChannelRouting, key: str) -> None:
    """After the key is accepted: the key's rate limit (429 with `Retry-After`), its last use,
    and the channel's name for the metrics. Messages never repeat the key."""
    wait = services.limiter.retry_after(hash_api_key(key), routing.rate_limit_per_s)
    if wait > 0:
        request.state.channel = routing.slug
        raise HTTPException(
            429,
            f"rate limit of {routing.rate_limit_per_s:g} requests per second for this key "
            f"exceeded; retry in {wait:.2f} s",
            headers={"Retry-After": retry_after_header(wait)},
        )
    services.key_use.seen(routing.id)
    request.state.channel = routing.slug


async def authorized_channel(
    channel: str, request: Request, services: ServicesDep, key: ApiKeyDep
) -> ChannelState:
    """The routing state of the channel in the path, or 404/401/429. The cached routing answers
    the common case (the current key, or the previous one within its grace period); a mismatch
    is checked against the registry, so a just-rotated key works at once."""
    cache = services.cache
    state = cache.channel(channel)
    if state is None:
        await asyncio.to_thread(cache.refresh_if_stale)  # maybe a channel created just now
        state = cache.channel(channel)
        if state is None:
            raise HTTPException(404, f"channel {channel!r} does not exist")
    if not state.routing.accepts_key(key, utcnow()):
        routing = await asyncio.to_thread(cache.routing_for_key, key)
        if routing is None or routing.slug != channel:
            raise HTTPException(401, "invalid API key for this channel")
        state = dataclasses.replace(state, routing=routing)
    admit(request, services, state.routing, key)
    return state


ChannelDep = Annotated[ChannelState, Depends(authorized_channel)]


def channel_of_key(request: Request, services: ServicesDep, key: ApiKeyDep) -> ChannelRouting:
    """The channel whose key was sent (for routes with no channel in the path), or 401/429."""
    routing = services.cache.routing_for_key(key)
    if routing is None:
        raise HTTPException(401, "invalid API key")
    admit(request, services, routing, key)
    return routing


KeyChannelDep = Annotated[ChannelRouting, Depends(channel_of_key)]
