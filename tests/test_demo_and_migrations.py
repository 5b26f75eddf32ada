"""The embedded demo's contents, and the registry upgrading an older schema by itself."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, timedelta
from pathlib import Path

from sqlalchemy import func, select

from core.ml.catalog import DEFAULT_ARCHITECTURE
from core.ml.datasets import load_dataset
from core.ml.images import decode_image
from db.engine import dispose_engines, get_engine, make_engine, session_scope
from db.migrate import current_revision, upgrade_database
from db.models import Annotation, Channel, Feedback, Prediction, Rollup
from db.repo import alerts, channels, models
from db.settings import artifact_dir


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
    assert sorted(v.architecture for v in versions) == sorted([DEFAULT_ARCHITECTURE, "seed-cnn"])
    newest = max(versions, key=lambda v: v.version)
    assert by_slug["web"].production_version_id == newest.id
    assert by_slug["mobile"].candidate_version_id == newest.id
    assert len(served) == 3 and all(count > 0 for _, count in served)
    assert feedback > 0


def test_demo_week_is_simulated_traffic_with_a_daily_rhythm(demo_registry):
    with session_scope() as s:
        rows = s.execute(select(Prediction.created_at, Prediction.simulated)).all()
        rollup_requests = s.scalar(
            select(func.sum(Rollup.requests)).where(Rollup.resolution_s == 3600)
        )
    assert all(simulated for _, simulated in rows)
    times = [at.astimezone(UTC) for at, _ in rows]
    assert max(times) - min(times) >= timedelta(days=6)
    assert rollup_requests == len(rows)  # written through the prediction log, rollups and all
    by_hour = Counter(at.hour for at in times if at < max(times) - timedelta(hours=12))
    afternoon = sum(by_hour[h] for h in range(12, 17))
    night = sum(by_hour[h] for h in range(0, 5))
    assert afternoon > 2.5 * night > 0


def test_demo_drift_episode_opens_alerts_on_web_only(demo_registry):
    with session_scope() as s:
        open_alerts = alerts.list_alerts(session=s, open_only=True)
    assert {(a.channel_slug, a.signal) for a in open_alerts} == {
        ("web", "drift"),
        ("web", "accuracy"),
    }


def _label_of_inverted(path: Path, labels: dict[bytes, int]) -> int | None:
    image = decode_image(path.read_bytes())
    return labels.get((255 - image).tobytes())


def test_demo_review_queue_holds_complaints_naming_the_true_class(demo_registry):
    digits = load_dataset("digits")
    labels = {img.tobytes(): int(y) for img, y in zip(digits.x, digits.y, strict=True)}
    with session_scope() as s:
        pending = s.execute(
            select(Feedback.claimed_class, Prediction.input_path)
            .join(Prediction, Prediction.id == Feedback.prediction_id)
            .join(Channel, Channel.id == Feedback.channel_id)
            .where(Channel.slug == "web", Feedback.review_status == "pending")
            .where(Feedback.rating == "down", Feedback.claimed_class.is_not(None))
        ).all()
        by_status = select(Feedback.review_status, func.count()).group_by(Feedback.review_status)
        verdicts = dict(s.execute(by_status).tuples().all())
        reviewers = set(s.scalars(select(Annotation.author)))
    truths = [(claimed, _label_of_inverted(artifact_dir() / p, labels)) for claimed, p in pending]
    inverted = [(claimed, truth) for claimed, truth in truths if truth is not None]
    assert len(inverted) >= 20  # a wave of the episode's mistakes waits for review
    assert sum(claimed == truth for claimed, truth in inverted) >= 0.95 * len(inverted)
    assert verdicts["pending"] > 50 and verdicts["confirmed"] > 50
    assert verdicts["corrected"] > 0 and verdicts["rejected"] > 0
    assert reviewers == {"demo-manager"}


def test_migrations_take_a_percent_encoded_url(tmp_path):
    """A URL with %-escapes (a password holding '@', a read-only SQLite URI) reaches Alembic
    unchanged: ConfigParser would otherwise refuse it as an interpolation."""
    from sqlalchemy import create_engine

    from db.migrate import alembic_config

    engine = create_engine("postgresql+psycopg://user:p%40ss@db.invalid/channelhub")
    assert alembic_config(engine).get_main_option("sqlalchemy.url") == (
        "postgresql+psycopg://user:p%40ss@db.invalid/channelhub"
    )
