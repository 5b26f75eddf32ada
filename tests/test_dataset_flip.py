"""A dataset's flip setting: defaults by source at registration, set at registration, changed
later through the action (audited) and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from core.actions.base import Actor
from core.actions.datasets import register_dataset, set_dataset_flip_safe
from core.ops.cli import main
from db.engine import session_scope
from db.errors import RegistryError
from db.queries.lookups import get_dataset_by_name, list_events

MANAGER = Actor("mia", "manager")


def _npz(tmp_path, name: str = "shapes.npz") -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / name
    np.savez(path, x=rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8), y=np.arange(30) % 3)
    return str(path)


def _flip_safe(name: str) -> bool:
    with session_scope() as s:
        return get_dataset_by_name(session=s, name=name).flip_safe


def test_registration_defaults_by_source_and_takes_a_setting(registry, tmp_path) -> None:
    assert register_dataset(actor=MANAGER, name="d", source="digits").flip_safe is False
    unknown = register_dataset(actor=MANAGER, name="a", source="npz", location=_npz(tmp_path))
    assert unknown.flip_safe is False
    photos = register_dataset(
        actor=MANAGER, name="p", source="npz", location=_npz(tmp_path), flip_safe=True
    )
    assert photos.flip_safe is True and _flip_safe("p") is True


def test_changing_the_setting_is_audited(registry, tmp_path) -> None:
    info = register_dataset(actor=MANAGER, name="a", source="npz", location=_npz(tmp_path))
    changed = set_dataset_flip_safe(actor=MANAGER, dataset_id=info.id, flip_safe=True)
    assert changed.flip_safe is True and _flip_safe("a") is True
    with session_scope() as s:
        (event,) = [e for e in list_events(session=s) if e.action == "dataset.set_flip_safe"]
    assert event.details["before"] == {"flip_safe": False}
    assert event.details["after"] == {"flip_safe": True}
    with pytest.raises(RegistryError, match="true or false"):
        set_dataset_flip_safe(actor=MANAGER, dataset_id=info.id, flip_safe="yes")
    with pytest.raises(RegistryError):
        set_dataset_flip_safe(actor=Actor("vic", "viewer"), dataset_id=info.id, flip_safe=False)
    assert _flip_safe("a") is True


def test_cli_sets_and_lists_the_setting(registry, tmp_path, capsys) -> None:
    location = _npz(tmp_path)
    assert main(["datasets", "add", "--name", "a", "--source", "npz", "--location", location,
                 "--flip-safe"]) == 0  # fmt: skip
    assert "mirror-safe" in capsys.readouterr().out and _flip_safe("a") is True
    assert main(["datasets", "set-flip", "a", "--no-flip-safe"]) == 0
    assert "change their class" in capsys.readouterr().out and _flip_safe("a") is False
    assert main(["datasets", "list"]) == 0
    assert "flips" in capsys.readouterr().out
