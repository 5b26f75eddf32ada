"""Channel actions: create, settings and SLOs, pause/resume, key rotation, promotion, canary."""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import Any

from sqlalchemy.orm import Session

from core.actions.base import Actor, action, audit, changed_fields, refuse_unknown_settings
from core.actions.gate import apply_gate
from db.errors import ConflictError, RegistryError
from db.repo import channels as repo
from db.repo.channels import ChannelInfo, ChannelSpec

# The fields `update_channel` may change, as the channel's info names them.
SETTINGS = tuple(f.name for f in fields(ChannelSpec))
# How long a rotated-out key keeps working unless the rotation says otherwise.
DEFAULT_KEY_GRACE_S = 24 * 3600


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


@action("channel.create", role="manager")
def create_channel(
    *, session: Session, actor: Actor, slug: str, spec: ChannelSpec
) -> tuple[ChannelInfo, str]:
    """Create a channel; returns it and its API key (shown once, stored hashed)."""
    info, key = repo.create_channel(session=session, slug=slug, spec=spec)
    audit(session, actor, "channel.create", "channel", slug, after=asdict(ChannelSpec.of(info)))
    return info, key


@action("channel.update", role="manager")
def update_channel(
    *,
    session: Session,
    actor: Actor,
    slug: str,
    reason: str = "",
    **changes: Any,
) -> ChannelInfo:
    """Change a channel's settings and SLOs; fields left out (or UNCHANGED) keep their value."""
    refuse_unknown_settings(changes, SETTINGS, "a channel")
    current = ChannelSpec.of(repo.get_channel(session=session, slug=slug))
    wanted = replace(current, **{k: v for k, v in changes.items() if v is not UNCHANGED})
    info = repo.update_channel(session=session, slug=slug, spec=wanted)
    changed = changed_fields(asdict(current), asdict(wanted), SETTINGS)
    audit(session, actor, "channel.update", "channel", slug, **changed, reason=reason.strip())
    return info


@action("channel.pause", role="manager")
def pause_channel(*, session: Session, actor: Actor, slug: str, reason: str = "") -> ChannelInfo:
    """Stop serving a channel; `reason` is shown to its API clients."""
    return _set_status(session, actor, "channel.pause", slug, "paused", reason)


@action("channel.resume", role="manager")
def resume_channel(*, session: Session, actor: Actor, slug: str, reason: str = "") -> ChannelInfo:
    """Serve a paused channel again."""
    return _set_status(session, actor, "channel.resume", slug, "active", reason)


def _set_status(
    session: Session, actor: Actor, action_name: str, slug: str, status: str, reason: str
) -> ChannelInfo:
    """Pause or resume, audited with the status before and after (the reason is stored as the
    status reason only on pause: the repository clears it on resume)."""
    before = repo.get_channel(session=session, slug=slug).status
    info = repo.set_channel_status(session=session, slug=slug, status=status, reason=reason)
    audit(
        session, actor, action_name, "channel", slug,
        before=before, after=info.status, reason=reason.strip(),
    )  # fmt: skip
    return info


@action("channel.rotate_key", role="admin")
def rotate_channel_key(
    *,
    session: Session,
    actor: Actor,
    slug: str,
    reason: str = "",
    grace_seconds: float = DEFAULT_KEY_GRACE_S,
) -> str:
    """Replace the channel's API key; the old one keeps working for `grace_seconds` (0: stops at
    once). Returns the new key. The audit keeps only the keys' 8-character prefixes."""
    before = repo.get_channel(session=session, slug=slug).api_key_prefix
    key = repo.rotate_api_key(session=session, slug=slug, grace_seconds=grace_seconds)
    audit(
        session, actor, "channel.rotate_key", "channel", slug,
        before=before, after=key[:8], grace_seconds=grace_seconds, reason=reason.strip(),
    )  # fmt: skip
    return key


@action("channel.promote", role="manager")
def promote_version(
    *,
    session: Session,
    actor: Actor,
    slug: str,
    version_id: int,
    reason: str = "",
    override_reason: str = "",
) -> ChannelInfo:
    """Make a version the channel's production version (ends its canary if it was the candidate),
    once the promotion gate passes it (or a manager overrides it with `override_reason`)."""
    channel = repo.get_channel(session=session, slug=slug)
    refuse_production(channel, version_id)
    before = channel.production_version_id
    gate = apply_gate(session, actor, slug, version_id, "channel.promote", override_reason)
    info = repo.promote_version(session=session, slug=slug, version_id=version_id)
    audit(
        session, actor, "channel.promote", "channel", slug,
        before=before, after=version_id, version_id=version_id, reason=reason.strip(),
        **_override(override_reason), **gate,
    )  # fmt: skip
    return info


def refuse_production(channel: ChannelInfo, version_id: int) -> None:
    """Promoting, restoring or putting in a canary the version the channel already serves in
    production is refused: it would change nothing but the trail."""
    if version_id == channel.production_version_id:
        raise ConflictError(f"version {version_id} already serves {channel.slug!r} in production")


def _override(override_reason: str) -> dict[str, str]:
    """The audit's override reason, when one was given."""
    text = (override_reason or "").strip()
    return {"override_reason": text} if text else {}


def _canary(info: ChannelInfo) -> dict[str, Any]:
    return {"version_id": info.candidate_version_id, "traffic": info.candidate_traffic}


@action("channel.start_canary", role="manager")
def start_canary(
    *,
    session: Session,
    actor: Actor,
    slug: str,
    version_id: int,
    traffic: float,
    reason: str = "",
    override_reason: str = "",
) -> ChannelInfo:
    """Route a share (0..1] of the channel's requests to a candidate version, once the promotion
    gate passes it (or a manager overrides it with `override_reason`)."""
    if version_id is None:
        raise RegistryError("a canary needs a candidate version")
    if not isinstance(traffic, int | float) or not 0.0 < traffic <= 1.0:
        raise RegistryError(f"candidate traffic share must be in (0, 1] (got {traffic})")
    channel = repo.get_channel(session=session, slug=slug)
    refuse_production(channel, version_id)
    before = _canary(channel)
    gate = apply_gate(session, actor, slug, version_id, "channel.start_canary", override_reason)
    info = repo.set_candidate(session=session, slug=slug, version_id=version_id, traffic=traffic)
    audit(
        session, actor, "channel.start_canary", "channel", slug,
        before=before, after=_canary(info), reason=reason.strip(),
        **_override(override_reason), **gate,
    )  # fmt: skip
    return info


@action("channel.end_canary", role="manager")
def end_canary(*, session: Session, actor: Actor, slug: str, reason: str = "") -> ChannelInfo:
    """Send all of the channel's traffic to production again."""
    before = _canary(repo.get_channel(session=session, slug=slug))
    if before["version_id"] is None:
        raise ConflictError(f"channel {slug!r} has no canary to end")
    info = repo.set_candidate(session=session, slug=slug, version_id=None)
    audit(
        session, actor, "channel.end_canary", "channel", slug,
        before=before, after=_canary(info), reason=reason.strip(),
    )  # fmt: skip
    return info


@action("channel.set_objectives", role="manager")
def set_objectives(
    *, session: Session, actor: Actor, slug: str, reason: str = "", **values: Any
) -> ChannelInfo:
    """Change a channel's live objectives and alerting (error rate, drift, feedback count for
    accuracy, M of N, drift minimum count, webhook); fields left out keep their value."""
    before = repo.get_channel(session=session, slug=slug).objectives
    info = repo.set_objectives(session=session, slug=slug, values=values)
    changed = changed_fields(before, info.objectives, values)
    audit(
        session, actor, "channel.set_objectives", "channel", slug, **changed, reason=reason.strip()
    )
    return info
