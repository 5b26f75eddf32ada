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
    # A prediction with feedback that an annotation references: a rebuild of `feedback` (or of
    # `predictions`, which feedback references) must not drop rows other rows point at.
    "insert into model_versions (id, model_id, version, architecture, artifact_path,"
    " artifact_sha256, hyperparameters, dataset_id, dataset_fingerprint, framework_versions,"
    " device, train_seconds, history, evaluation, feedback_samples, split_seed, created_by,"
    " created_at) values (1, 1, 1, 'seed-cnn', 'm.keras', 'x', '{}', 1, 'f', '{}', 'cpu', 1, '{}',"
    " '{}', 0, 0, 'x', '2026-01-01')",
    "insert into predictions (id, channel_id, version_id, arm, predicted_class, confidence,"
    " probabilities, latency_ms, input_path, created_at) values ('p1', 1, 1, 'production', 3,"
    " 0.9, '[]', 1, NULL, '2026-01-01')",
    "insert into feedback (id, prediction_id, channel_id, version_id, predicted_class,"
    " confidence, rating, claimed_class, comment, review_status, used_in_version_id, created_at)"
    " values (1, 'p1', 1, 1, 3, 0.9, 'down', NULL, '', 'confirmed', NULL, '2026-01-01')",
    "insert into annotations (id, feedback_id, verdict, true_class, tags, note, author,"
    " is_current, created_at) values (1, 1, 'confirmed', 3, '[]', '', 'x', 1, '2026-01-01')",
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
        assert connection.exec_driver_sql("select feedback_id from annotations").scalar() == 1
    engine.dispose()


def test_alert_versions_are_known_for_open_alerts_only(tmp_path):
    """0017: an open alert is about the version the channel serves now; a cleared one's version
    stays unknown (None), and the controller never clears an alert for an unknown version."""
    from alembic import command

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_database(engine, "0016_holdout_images")
    with engine.begin() as connection:
        for statement in ROWS:
            connection.exec_driver_sql(statement)
        connection.exec_driver_sql("update channels set production_version_id = 1")
        for alert_id, cleared in ((1, "'2026-01-02'"), (2, "NULL")):
            connection.exec_driver_sql(
                "insert into alerts (id, channel_id, signal, arm, message, opened_at, cleared_at)"
                f" values ({alert_id}, 1, 'latency', 'production', '', '2026-01-01', {cleared})"
            )
    upgrade_database(engine, "0017_alert_version")
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("select id, version_id from alerts order by id")
        assert rows.all() == [(1, None), (2, 1)]
    command.downgrade(alembic_config(engine), "0016_holdout_images")
    assert current_revision(engine) == "0016_holdout_images"
    engine.dispose()
