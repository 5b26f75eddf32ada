"""alerts.version_id: the version an alert was opened on, so that the controller clears it once
another version serves the channel (that version is judged on its own traffic)"""

from alembic import op

from db.migrations.columns import add_reference, drop_column

revision = "0017_alert_version"
down_revision = "0016_holdout_images"
FOREIGN_KEY = "fk_alerts_version"


def upgrade() -> None:
    add_reference("alerts", "version_id", "model_versions", FOREIGN_KEY)
    # An open alert is about what serves now; a cleared one's version stays unknown.
    op.execute(
        "UPDATE alerts SET version_id = (SELECT production_version_id FROM channels"
        " WHERE channels.id = alerts.channel_id) WHERE cleared_at IS NULL"
    )


def downgrade() -> None:
    drop_column("alerts", "version_id", FOREIGN_KEY)
