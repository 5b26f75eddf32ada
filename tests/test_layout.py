"""The import arrows of DESIGN.md, checked on every module (function-level imports included):
core/ml imports nothing of ours; db imports neither core nor dashboard; nothing in core imports
dashboard; serving and training never import each other; pages never import a repository."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "db", "dashboard")

# (importing module prefix, imported module prefix, why); a prefix matches itself and below it.
FORBIDDEN = [
    ("core.ml", "db", "core/ml is pure ML: it talks to the registry through its callers"),
    ("core.ml", "streamlit", "core/ml is pure ML: no UI"),
    ("core.ml", "dashboard", "core/ml is pure ML: no UI"),
    ("db", "core", "the registry is below core"),
    ("db", "dashboard", "the registry is below the dashboard"),
    ("core", "dashboard", "nothing imports the dashboard"),
    ("core.serving", "core.training", "serving and training are separate processes"),
    ("core.training", "core.serving", "serving and training are separate processes"),
    ("dashboard", "db.repo", "pages read through db.queries and change through core.actions"),
]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every module `path` imports, anywhere in the file, with its line number."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def core_ml_rule(importer: str, imported: str) -> str | None:
    """core/ml may import no other part of core."""
    if _within(importer, "core.ml") and _within(imported, "core") and imported != "core":
        if not _within(imported, "core.ml"):
            return "core/ml imports no other core package"
    return None


def violations(root: Path = ROOT) -> list[str]:
    """One message per file, line and broken rule."""
    found: dict[tuple[str, int, str], str] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer, where = module_name(path, root), str(path.relative_to(root))
            for line, imported in imported_names(path, root):
                reasons = [why for src, dst, why in FORBIDDEN
                           if _within(importer, src) and _within(imported, dst)]  # fmt: skip
                reasons += [r for r in [core_ml_rule(importer, imported)] if r]
                for why in reasons:
                    found.setdefault(
                        (where, line, why), f"{where}:{line} imports {imported}: {why}"
                    )
    return list(found.values())


def test_no_forbidden_import_arrow():
    found = violations()
    assert not found, "forbidden imports:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("core/ml/bad.py", "def f():\n    from db.engine import session_scope\n", "core/ml/bad"),
        ("core/ml/bad.py", "from core.actions import base\n", "no other core package"),
        ("core/ml/bad.py", "from ..serving import api\n", "no other core package"),
        ("db/bad.py", "import core.ml.datasets\n", "below core"),
        ("core/serving/bad.py", "from core.training import jobs\n", "separate processes"),
        ("core/training/bad.py", "import core.serving.api\n", "separate processes"),
        ("dashboard/bad.py", "from db.repo.channels import list_channels\n", "db.queries"),
        ("dashboard/bad.py", "from db.repo import channels\n", "db.queries"),
        ("core/ops/bad.py", "def f():\n    import dashboard.ui\n", "nothing imports"),
    ],
)
def test_the_check_sees_a_bad_import(tmp_path: Path, relative: str, source: str, expected: str):
    """The walker itself can fail: one bad import in a copy of the layout is reported."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    found = violations(tmp_path)
    assert found and expected in found[0], found


def test_allowed_imports_pass(tmp_path: Path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "dashboard" / "ok.py").write_text(
        "from db.queries.lookups import list_channels\nfrom core.actions import channels\n"
        "from db.errors import RegistryError\nfrom db.models import VERDICTS\n"
    )
    (tmp_path / "core" / "ml").mkdir()
    (tmp_path / "core" / "ml" / "ok.py").write_text("from core.ml.catalog import X\nimport numpy\n")
    assert violations(tmp_path) == []
