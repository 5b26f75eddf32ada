"""One settings object: it reads every variable, the README documents exactly those, and no
other module reads the environment itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from db.settings import (
    CHANNEL_KEY_PREFIX,
    LIBRARY_VARIABLES,
    VARIABLES,
    Settings,
    SettingsError,
)

ROOT = Path(__file__).resolve().parents[1]


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z0-9_<>]+)`", section, flags=re.M))


def test_readme_table_matches_the_settings_object():
    documented = readme_variables()
    expected = set(VARIABLES) | set(LIBRARY_VARIABLES) | {CHANNEL_KEY_PREFIX + "<CHANNEL>"}
    assert documented == expected


def test_every_variable_fills_a_settings_field():
    fields = set(Settings.__dataclass_fields__)
    assert set(VARIABLES.values()) == fields


def test_defaults_and_overrides(tmp_path):
    s = Settings.from_env({"CHANNELHUB_HOME": str(tmp_path), "USER": "ana"})
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'channelhub.db'}"
    assert s.artifacts == tmp_path.resolve() / "artifacts"
    assert (s.user, s.max_batch, s.max_pixels, s.force_cpu) == ("ana", 32, 25_000_000, False)
    s = Settings.from_env({"CHANNELHUB_MAX_BATCH": "8", "CHANNELHUB_FORCE_CPU": "1"})
    assert (s.max_batch, s.force_cpu) == (8, True)


@pytest.mark.parametrize("value", ["lots", "-3"])
def test_bad_numbers_name_the_variable(value):
    with pytest.raises(SettingsError, match="CHANNELHUB_MAX_PIXELS"):
        Settings.from_env({"CHANNELHUB_MAX_PIXELS": value})


def _name(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _reads_our_variables(tree: ast.AST) -> list[int]:
    """Lines that read one of our variables (DATABASE_URL, CHANNELHUB_*) straight from the
    environment: os.environ.get/[]/os.getenv. Libraries' own variables (KERAS_BACKEND,
    CUDA_VISIBLE_DEVICES, XLA_FLAGS, TF_*) may be read and set where they are used."""
    lines = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if ast.unparse(node.func) in ("os.environ.get", "os.getenv", "environ.get"):
                name = _name(node.args[0]) if node.args else None
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.ctx, ast.Load):
                name = _name(node.slice)
        if name and (name == "DATABASE_URL" or name.startswith("CHANNELHUB_")):
            lines.append(node.lineno)
    return lines


def test_no_module_but_settings_reads_the_environment():
    offenders = []
    for folder in ("core", "db", "dashboard"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "settings.py" and path.parent.name == "db":
                continue
            for line in _reads_our_variables(ast.parse(path.read_text())):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == []


def test_serving_settings_reach_the_worker_processes(monkeypatch):
    """`channelhub serve --workers N` hands its settings to the workers as variables: what a
    worker reads back is what the server was given."""
    from core.serving.settings import FROM_ENV, ServingSettings

    given = ServingSettings(
        max_upload_bytes=1234, max_pixels=5678, refresh_seconds=2.5, max_batch=16,
        batch_wait_ms=9.0, batch_gap_ms=0.7,
    )  # fmt: skip
    for variable, value in given.as_env().items():
        monkeypatch.setenv(variable, value)
    read = ServingSettings.from_env()
    assert {n: getattr(read, n) for n in FROM_ENV} == {n: getattr(given, n) for n in FROM_ENV}
    assert read.batch_policy().gap_s == 0.0007


def test_serving_defaults_are_the_variables_defaults():
    """`ServingSettings()` (the tests' servers) and `from_env` with no variable set (a real one)
    tune serving alike: the defaults stand in both classes and must not drift apart."""
    from core.serving.settings import FROM_ENV, ServingSettings

    unset = Settings.from_env({})
    assert {n: getattr(ServingSettings(), n) for n in FROM_ENV} == {
        n: getattr(unset, n) for n in FROM_ENV
    }
