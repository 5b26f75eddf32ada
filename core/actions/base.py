"""How an action runs: who acts, which role it needs, one transaction, one audit event."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from db.engine import session_scope
from db.errors import RegistryError
from db.repo.audit import record_event

F = TypeVar("F", bound=Callable[..., Any])

# Each role may do everything the roles before it may do.
ROLES = ("viewer", "annotator", "manager", "admin")


class PermissionDenied(RegistryError):
    """The acting user's role may not do this action."""

    kind = "forbidden"


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in user, a CLI user, an API key's channel or a system process.

    The command line acts as admin: a shell that can read the registry file can already change
    anything in it, so a CLI role would protect nothing (see README, "Sign-in and roles")."""

    name: str
    role: str = "admin"

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


SYSTEM = Actor("system", "admin")


@dataclass(frozen=True)
class ActionSpec:
    """One registered action: its name (`noun.verb`), the least role it needs, the callable."""

    name: str
    role: str
    run: Callable[..., Any]
    doc: str


ACTIONS: dict[str, ActionSpec] = {}


def as_actor(actor: Actor | str) -> Actor:
    if isinstance(actor, Actor):
        return actor
    if not isinstance(actor, str) or not actor.strip():
        raise RegistryError("an action needs the name of who is acting")
    return Actor(actor.strip())


def action(name: str, *, role: str) -> Callable[[F], F]:
    """Register `fn(*, session, actor, **kwargs)` as the action `name`.

    Callers pass `actor=` (an Actor or a name) and may pass `session=` to join a unit of work
    they own; otherwise the action runs in its own transaction. The role is checked first."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def run(*, actor: Actor | str, session: Session | None = None, **kwargs: Any) -> Any:
            who = as_actor(actor)
            if not who.may(role):
                record_refusal(who, name, role, kwargs)
                raise PermissionDenied(
                    f"{who.name} ({who.role}) may not {name}: it needs the {role} role"
                )
            if session is not None:
                return fn(session=session, actor=who, **kwargs)
            with session_scope() as own:
                return fn(session=own, actor=who, **kwargs)

        if name in ACTIONS:
            raise ValueError(f"action {name!r} registered twice")
        ACTIONS[name] = ActionSpec(name, role, run, (fn.__doc__ or "").strip().split("\n")[0])
        return run  # type: ignore[return-value]

    return register


# Arguments never copied into the audit row of a refusal.
SECRET_WORDS = ("password", "key", "token", "secret")


def record_refusal(who: Actor, name: str, role: str, kwargs: dict[str, Any]) -> None:
    """Audit a refused action in its own transaction: the caller's rolls back on the refusal.

    Only short scalar arguments are kept (ids, slugs), never anything named like a secret; the
    fields of a dataclass argument (ChannelSpec, AnnotationInput) count as arguments."""
    flat: dict[str, Any] = {}
    for key, value in kwargs.items():
        is_record = is_dataclass(value) and not isinstance(value, type)
        flat.update(asdict(value) if is_record else {key: value})
    shown = {
        key: value
        for key, value in flat.items()
        if isinstance(value, int | float | str)
        and len(str(value)) <= 100
        and not any(word in key.lower() for word in SECRET_WORDS)
    }
    with session_scope() as own:
        audit(own, who, "access.denied", "action", name, role=who.role, needs=role, args=shown)


def audit(
    session: Session,
    actor: Actor,
    action_name: str,
    object_type: str,
    object_id: object,
    **details: Any,
) -> None:
    """The audit row of an action, in the action's own transaction."""
    record_event(
        session=session,
        actor=actor.name,
        action=action_name,
        object_type=object_type,
        object_id=object_id,
        **details,
    )


def refuse_unknown_settings(changes: Iterable[str], known: Iterable[str], owner: str) -> None:
    """A settings change naming a field that `owner` (e.g. "a channel") lacks is refused, naming
    every such field."""
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise RegistryError(f"{owner} has no setting {', '.join(unknown)}")


def changed_fields(
    before: Mapping[str, Any], after: Mapping[str, Any], keys: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The audit's `before` and `after` of a settings change: only the keys whose value changed."""
    changed = [k for k in keys if before.get(k) != after.get(k)]
    return {
        "before": {k: before.get(k) for k in changed},
        "after": {k: after.get(k) for k in changed},
    }


def all_actions() -> dict[str, ActionSpec]:
    """Every action, after importing every action module."""
    from core.actions import (  # noqa: F401
        alerts,
        canary,
        channels,
        datasets,
        feedback,
        jobs,
        models,
        users,
    )

    return dict(ACTIONS)
