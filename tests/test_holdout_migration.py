"""Revision 0011 on a registry from before holdouts: digits gets the holdout registration gives
it, its clean seed-0 lineages are marked scored on it, everything else stays "holdout unknown"."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import sqlalchemy as sa

from core.ml.datasets import load_dataset
from core.ml.holdout import Holdout, make_holdout
from db.engine import dispose_engines, make_engine
from db.migrate import upgrade_database

BEFORE = "0010_retrain_then_canary"


def _old_registry(url: str, digits_fingerprint: str) -> None:
    engine = make_engine(url)
    upgrade_database(engine, BEFORE)
    now = datetime(2025, 1, 1)
    meta = sa.MetaData()
    meta.reflect(engine, only=["datasets", "models", "model_versions"])
    datasets, models, versions = (meta.tables[t] for t in ("datasets", "models", "model_versions"))
    with engine.begin() as conn:
        for id_, source, fingerprint in (
            (1, "digits", digits_fingerprint),
            (2, "folder", "9" * 64),
        ):
            conn.execute(
                datasets.insert().values(
                    id=id_, name=source, source=source, location=None, class_names=[],
                    input_shape=[8, 8, 1], num_samples=1797, fingerprint=fingerprint,
                    created_at=now,
                )
            )  # fmt: skip
        conn.execute(models.insert().values(id=1, name="m", description="", created_at=now))
        # id: (dataset, split seed, parent)
        lineage = {1: (1, 0, None), 2: (1, 0, 1), 3: (1, 3, None), 4: (1, 0, 3), 5: (2, 0, None)}
        for id_, (dataset_id, seed, parent) in lineage.items():
            conn.execute(
                versions.insert().values(
                    id=id_, model_id=1, version=id_, architecture="seed-cnn", artifact_path="x",
                    artifact_sha256="0" * 64, hyperparameters={}, dataset_id=dataset_id,
                    dataset_fingerprint="0" * 64, parent_version_id=parent,
                    framework_versions={}, device="cpu", train_seconds=1.0, history=[],
                    evaluation={}, feedback_samples=0, split_seed=seed, created_by="old",
                    created_at=now,
                )
            )  # fmt: skip
    engine.dispose()


def test_migration_fixes_digits_holdout_and_marks_unknown_versions(tmp_path):
    digits = load_dataset("digits")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _old_registry(url, digits.fingerprint)
    engine = make_engine(url)
    upgrade_database(engine)
    with engine.connect() as conn:
        fixed = dict(conn.execute(sa.text("SELECT name, holdout_fingerprint FROM datasets")).all())
        stored = conn.execute(sa.text("SELECT holdout FROM datasets WHERE id = 1")).scalar_one()
        scored = dict(
            conn.execute(sa.text("SELECT id, holdout_fingerprint FROM model_versions")).all()
        )
    engine.dispose()
    dispose_engines()
    today = make_holdout(digits)  # what registering digits gives it now
    expected = today.fingerprint
    assert fixed == {"digits": expected, "folder": None}
    derived = Holdout.from_bytes(stored)
    assert np.array_equal(derived.val_idx, today.val_idx)
    assert np.array_equal(derived.test_idx, today.test_idx) and derived.fingerprint == expected
    # v1 and its seed-0 fine-tune v2 were scored on it; v3 (seed 3) was not, and v4, though
    # seed 0, fine-tunes v3, which may have trained on those test images; v5 is another dataset.
    assert scored == {1: expected, 2: expected, 3: None, 4: None, 5: None}
