"""One list of dataset sources (core.ml.catalog): registration checks it, the registry none."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from core.datasets import register_loaded_dataset
from core.ml.catalog import DATASET_SOURCES
from core.ml.datasets import LabelledImages
from db.engine import session_scope
from db.errors import RegistryError
from db.repo.datasets import list_datasets

ROOT = Path(__file__).resolve().parents[1]
TINY = LabelledImages(np.zeros((6, 2, 2, 1), dtype=np.uint8), np.arange(6) % 2, ("a", "b"))


def test_registration_refuses_a_source_core_ml_does_not_know(registry):
    with pytest.raises(RegistryError, match="unknown dataset source 'ftp'.*digits, folder"):
        with session_scope() as s:
            register_loaded_dataset(session=s, name="x", source="ftp", location=None, data=TINY)
    with session_scope() as s:
        register_loaded_dataset(session=s, name="y", source="npz", location="y.npz", data=TINY)
        assert [(d.name, d.source) for d in list_datasets(session=s)] == [("y", "npz")]


def test_no_other_module_spells_out_the_sources():
    """A second copy of the list would drift; only core/ml/catalog.py may hold it."""
    wanted = set(DATASET_SOURCES)
    copies = []
    for folder in ("core", "db", "dashboard"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Tuple | ast.List | ast.Set):
                    values = {getattr(e, "value", None) for e in node.elts}
                    if values == wanted:
                        copies.append(str(path.relative_to(ROOT)))
    assert copies == ["core/ml/catalog.py"]
