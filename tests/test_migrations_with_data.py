"""Every revision upgrades a SQLite registry that already holds rows other tables reference.

Alembic's batch mode rebuilds a table on SQLite (create, copy, drop, rename); with foreign keys
on, dropping a table that other rows reference fails, so a revision that rebuilds a referenced
table breaks every existing registry while passing on an empty one."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from db.engine import make_engine
from db.migrate import alembic_config, current_revision, upgrade_database

ROWS = (
    "insert into datasets (id, name, source, location, class_names, input_shape, num_samples,"
    " fingerprint, created_at) values (1, 'digits', 'digits', NULL, '[]', '[8, 8, 1]', 10, 'f',"
    " '2026-01-01')",
    "insert into models (id, name, description, created_at) values (1, 'm', '', '2026-01-01')",
    "insert into channels (id, slug, name, kind, dataset_id, model_id, candidate_traffic, status,"
    " status_reason, created_at, updated_at) values (1, 'web', 'web', 'web', 1, 1, 0, 'active',"
    " '', '2026-01-01', '2026-01-01')",
    "insert into training_jobs (id, model_id, channel_id, dataset_id, architecture,"
    " include_feedback, hyperparameters, device_request, status, progress, current_epoch,"
    " total_epochs, requested_by, note, cancel_requested, created_at) values (1, 1, 1, 1,"
    " 'seed-cnn', 0, '{}', 'auto', 'queued', 0, 0, 1, 'x', '', 0, '2026-01-01')",
)


def test_each_revision_upgrades_a_registry_with_referenced_rows(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_database(engine, "0002_dashboard_indexes")
    with engine.begin() as connection:
        for statement in ROWS:
            connection.exec_driver_sql(statement)
    script = ScriptDirectory.from_config(alembic_config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    for revision in revisions[revisions.index("0002_dashboard_indexes") + 1 :]:
        upgrade_database(engine, revision)
        assert current_revision(engine) == revision
    with engine.connect() as connection:
        assert connection.exec_driver_sql("select slug from channels").scalar() == "web"
    engine.dispose()
