"""Roles through the action layer: every action × every role, refusals audited in their own
transaction, and audit rows that nothing can change or delete (ORM and database)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update

from core.actions import channels as channel_actions
from core.actions import jobs as job_actions
from core.actions.base import ROLES, Actor, PermissionDenied, all_actions
from db.engine import session_scope
from db.models import AuditEvent, AuditRowsAreAppendOnly
from db.repo.audit import list_events
from db.repo.channels import ChannelSpec


def refusals(actor: str) -> list:
    with session_scope() as s:
        return [e for e in list_events(session=s, action="access", limit=1000) if e.actor == actor]


@pytest.mark.parametrize("role", ROLES)
def test_role_by_action_matrix(registry, role: str):
    """Allowed iff the role is at least the action's; a refusal raises and leaves one row."""
    actor = Actor(f"matrix-{role}", role)
    refused = []
    for name, spec in sorted(all_actions().items()):
        allowed = ROLES.index(role) >= ROLES.index(spec.role)
        try:
            spec.run(actor=actor)  # no arguments: an allowed action fails later, on its input
        except PermissionDenied:
            assert not allowed, f"{role} was refused {name} (needs {spec.role})"
            refused.append(name)
        except Exception:  # noqa: BLE001 - the role passed; the missing arguments failed
            assert allowed, f"{role} passed the role check of {name} (needs {spec.role})"
        else:
            assert allowed, f"{role} ran {name} (needs {spec.role})"
    rows = refusals(actor.name)
    assert sorted(r.object_id for r in rows) == refused
    assert all(r.details["role"] == role for r in rows)
    if role == "admin":
        assert not refused
    if role == "viewer":
        assert "feedback.annotate" in refused and "channel.promote" in refused


def test_every_action_names_a_known_role(registry):
    assert {spec.role for spec in all_actions().values()} <= set(ROLES)
    assert {spec.role for spec in all_actions().values()} >= {"annotator", "manager", "admin"}


@pytest.mark.parametrize("role", ["viewer", "annotator"])
def test_viewer_and_annotator_calling_manager_actions_are_refused_and_audited(registry, role):
    from tests.registry_helpers import add_dataset, add_model_with_version

    with session_scope() as s:
        model, version = add_model_with_version(s, add_dataset(s))
    channel_actions.create_channel(
        actor="setup", slug="web", spec=ChannelSpec(name="Web", model_id=model.id)
    )
    who = Actor(f"{role}-eve", role)
    with pytest.raises(PermissionDenied, match="needs the manager role"):
        channel_actions.promote_version(
            actor=who, slug="web", version_id=version.id, reason="just because"
        )
    with pytest.raises(PermissionDenied):
        job_actions.enqueue_retrain(actor=who, model_id=model.id, dataset_id=1,
                                    architecture="seed-cnn", hyperparameters={})  # fmt: skip
    rows = refusals(who.name)
    assert [r.object_id for r in reversed(rows)] == ["channel.promote", "job.enqueue"]
    assert rows[-1].details["args"] == {"slug": "web", "version_id": version.id,
                                        "reason": "just because"}  # fmt: skip
    with session_scope() as s:
        from db.queries.lookups import get_channel

        assert get_channel(session=s, slug="web").production_version_id is None
    with session_scope() as s:
        promotions = list_events(session=s, action="channel.promote")
    assert not promotions, "the refused promotion wrote its own audit row"


def test_a_refusal_is_audited_even_when_the_callers_transaction_rolls_back(registry):
    with pytest.raises(PermissionDenied):
        with session_scope() as s:
            channel_actions.pause_channel(actor=Actor("viewer-vic", "viewer"), session=s,
                                          slug="web", reason="")  # fmt: skip
    assert [r.object_id for r in refusals("viewer-vic")] == ["channel.pause"]


def test_a_refusal_never_copies_a_password_into_the_audit(registry):
    from core.actions.users import add_user

    with pytest.raises(PermissionDenied):
        add_user(actor=Actor("man-mo", "manager"), name="x", role="admin", password="s3cret-pass!")
    (row,) = refusals("man-mo")
    assert row.details["args"] == {"name": "x", "role": "admin"}


def _one_event() -> int:
    from core.actions.base import SYSTEM, audit

    with session_scope() as s:
        audit(s, SYSTEM, "test.write", "thing", 1, before={"a": 1})
    with session_scope() as s:
        return list_events(session=s, action="test.write")[0].id


@pytest.mark.parametrize(
    "change",
    [
        lambda s, i: setattr(s.get(AuditEvent, i), "actor", "someone else"),
        lambda s, i: s.delete(s.get(AuditEvent, i)),
        lambda s, i: s.execute(update(AuditEvent).values(actor="x")),
        lambda s, i: s.execute(delete(AuditEvent)),
    ],
    ids=["orm-update", "orm-delete", "bulk-update", "bulk-delete"],
)
def test_the_orm_refuses_to_change_or_delete_an_audit_row(registry, change):
    event_id = _one_event()
    with pytest.raises(AuditRowsAreAppendOnly):
        with session_scope() as s:
            change(s, event_id)
    with session_scope() as s:
        assert s.get(AuditEvent, event_id).actor == "system"


@pytest.mark.parametrize("sql", ["UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"])
def test_the_database_refuses_to_change_or_delete_an_audit_row(registry, sql):
    from sqlalchemy.exc import IntegrityError

    event_id = _one_event()
    with pytest.raises(IntegrityError, match="append-only"):
        with session_scope() as s:
            s.execute(text(sql))
    with session_scope() as s:
        assert s.get(AuditEvent, event_id).actor == "system"
