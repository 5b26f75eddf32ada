"""The embedded demo's contents, and the registry upgrading an older schema by itself."""

from __future__ import annotations

from sqlalchemy import func, select

from db.engine import dispose_engines, get_engine, make_engine, session_scope
from db.migrate import current_revision, upgrade_database
from db.models import Feedback, Prediction
from db.repo import channels, models


def test_old_database_is_upgraded_on_first_use(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = make_engine(url)
    upgrade_database(old, "0001_initial")
    assert current_revision(old) == "0001_initial"
    old.dispose()
    dispose_engines()
    engine = get_engine(url)
    assert current_revision(engine) != "0001_initial"
    with engine.connect() as conn:
        indexes = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list('predictions')")}
    assert "ix_predictions_channel_created_latency" in indexes
    dispose_engines()


def test_demo_has_three_channels_two_trained_versions_traffic_and_feedback(demo_registry):
    with session_scope() as s:
        by_slug = {c.slug: c for c in channels.list_channels(session=s)}
        versions = models.list_versions(session=s)
        served = s.execute(
            select(Prediction.channel_id, func.count()).group_by(Prediction.channel_id)
        ).all()
        feedback = s.scalar(select(func.count()).select_from(Feedback))
    assert sorted(by_slug) == ["mobile", "partner-api", "web"]
    assert sorted(v.architecture for v in versions) == ["resnet-small", "seed-cnn"]
    newest = max(versions, key=lambda v: v.version)
    assert by_slug["web"].production_version_id == newest.id
    assert by_slug["mobile"].candidate_version_id == newest.id
    assert len(served) == 3 and all(count > 0 for _, count in served)
    assert feedback > 0
