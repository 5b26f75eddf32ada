"""one holdout per dataset: the fixed validation/test split stored with the dataset, and on each
model version the holdout it was scored on (NULL = unknown)

Datasets registered before: the built-in `digits` set (when its data is unchanged) gets the
holdout registration gives it now, which is the split its seed-0 jobs used; its versions trained
with seed 0 along a seed-0 lineage were scored on exactly that test part and are marked so.
Every other version keeps holdout_fingerprint NULL ("holdout unknown", never compared); every
other dataset gets its holdout the first time a job trains on it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_dataset_holdouts"
down_revision = "0010_retrain_then_canary"


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holdout", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("holdout_fingerprint", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("holdout_summary", sa.JSON(), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holdout_fingerprint", sa.String(64), nullable=True))
    _fix_digits_holdouts(op.get_bind())


def _fix_digits_holdouts(bind) -> None:
    datasets = sa.table(
        "datasets", sa.column("id"), sa.column("source"), sa.column("fingerprint"),
        sa.column("holdout", sa.LargeBinary()), sa.column("holdout_fingerprint"),
        sa.column("holdout_summary", sa.JSON()),
    )  # fmt: skip
    rows = bind.execute(
        sa.select(datasets.c.id, datasets.c.fingerprint).where(datasets.c.source == "digits")
    ).all()
    if not rows:
        return
    holdout, summary, holdout_fingerprint, data_fingerprint = _digits_holdout()
    for dataset_id, fingerprint in rows:
        if fingerprint != data_fingerprint:
            continue  # other data than today's digits: its holdout cannot be known here
        bind.execute(
            datasets.update().where(datasets.c.id == dataset_id).values(
                holdout=holdout, holdout_fingerprint=holdout_fingerprint,
                holdout_summary=summary,
            )
        )  # fmt: skip
        _mark_seed_zero_lineages(bind, dataset_id, holdout_fingerprint)


def _digits_holdout() -> tuple[bytes, dict, str, str]:
    """digits' holdout as core.ml.holdout made it when this revision was written (a frozen
    copy: the registry may not import core, and a revision must not change with later code).
    Returns (holdout bytes, summary, holdout fingerprint, data fingerprint)."""
    import hashlib
    import io
    import json

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.round(bunch.images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    digest = hashlib.sha256()
    for arr in (x, y):
        digest.update(f"{arr.shape}|{arr.dtype.str}|".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    digest.update("\x1f".join(str(i) for i in range(10)).encode())
    data_fingerprint = digest.hexdigest()
    rest, test = train_test_split(np.arange(len(y)), test_size=0.15, random_state=0, stratify=y)
    _, val = train_test_split(rest, test_size=0.15 / 0.85, random_state=0, stratify=y[rest])
    val, test = np.sort(val).astype(np.int64), np.sort(test).astype(np.int64)
    summary = {"origin": "seeded", "seed": 0, "num_samples": int(len(y)),
               "num_val": int(len(val)), "num_test": int(len(test))}  # fmt: skip
    named = hashlib.sha256(f"{data_fingerprint}|{len(y)}|".encode())
    named.update(test.astype("<i8").tobytes())
    meta = json.dumps({**summary, "dataset_fingerprint": data_fingerprint}, sort_keys=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, val=val, test=test, meta=np.array(meta))
    return buffer.getvalue(), summary, named.hexdigest(), data_fingerprint


def _mark_seed_zero_lineages(bind, dataset_id: int, holdout_fingerprint: str) -> None:
    """Versions whose own split and every ancestor's split was seed 0 on this dataset: their
    test part is the holdout and no ancestor trained on it."""
    versions = sa.table(
        "model_versions", sa.column("id"), sa.column("dataset_id"), sa.column("split_seed"),
        sa.column("parent_version_id"), sa.column("holdout_fingerprint"),
    )  # fmt: skip
    rows = bind.execute(
        sa.select(
            versions.c.id,
            versions.c.dataset_id,
            versions.c.split_seed,
            versions.c.parent_version_id,
        )  # fmt: skip
    ).all()
    by_id = {r.id: r for r in rows}

    def clean(version_id: int) -> bool:
        seen: set[int] = set()
        current: int | None = version_id
        while current is not None:  # a loop, not recursion: lineages can be long
            row = by_id.get(current)
            if row is None or current in seen:
                return False
            if row.dataset_id != dataset_id or row.split_seed != 0:
                return False
            seen.add(current)
            current = row.parent_version_id
        return True

    known = [r.id for r in rows if r.dataset_id == dataset_id and clean(r.id)]
    if known:
        bind.execute(
            versions.update()
            .where(versions.c.id.in_(known))
            .values(holdout_fingerprint=holdout_fingerprint)
        )


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("holdout_fingerprint")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("holdout_summary")
        batch_op.drop_column("holdout_fingerprint")
        batch_op.drop_column("holdout")
