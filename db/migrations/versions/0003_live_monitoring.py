"""live monitoring: simulated predictions, rollups per channel/version/arm/bucket, alerts,
live SLOs
"""

import sqlalchemy as sa
from alembic import op

from db.types import UTCDateTime

revision = "0003_live_monitoring"
down_revision = "0002_dashboard_indexes"


def channel_columns() -> tuple[sa.Column, ...]:
    """Fresh columns each time (a Column joins the table it is added to)."""
    return (
        sa.Column("slo_min_feedback", sa.Integer(), nullable=False, server_default="20"),
        sa.Column("slo_max_error_rate", sa.Float(), nullable=True),
        sa.Column("slo_max_drift_psi", sa.Float(), nullable=True),
        sa.Column("alert_m", sa.Integer(), nullable=False, server_default="3"),
        sa.Column("alert_n", sa.Integer(), nullable=False, server_default="5"),
        sa.Column("drift_min_count", sa.Integer(), nullable=False, server_default="200"),
        sa.Column("webhook_url", sa.String(500), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("simulated", sa.Boolean(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        for column in channel_columns():
            batch_op.add_column(column)
    counts = [
        sa.Column(name, sa.Integer(), nullable=False, server_default="0")
        for name in ("requests", "errors", "simulated", "thumbs_up", "thumbs_down")
        + ("annotated_right", "annotated_wrong")
    ]
    op.create_table(
        "rollups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("arm", sa.String(20), nullable=False),
        sa.Column("resolution_s", sa.Integer(), nullable=False),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        *counts,
        sa.Column("latency_sum_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("latency_hist", sa.JSON(), nullable=False),
        sa.Column("confidence_hist", sa.JSON(), nullable=False),
        sa.Column("class_counts", sa.JSON(), nullable=False),
        sa.Column("intensity_hist", sa.JSON(), nullable=False),
        sa.UniqueConstraint(
            "channel_id", "version_id", "arm", "resolution_s", "bucket_start", name="uq_rollups_key"
        ),
    )
    op.create_index("ix_rollups_window", "rollups", ["channel_id", "resolution_s", "bucket_start"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("signal", sa.String(20), nullable=False),
        sa.Column("arm", sa.String(20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("cleared_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_alerts_channel_open", "alerts", ["channel_id", "cleared_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_channel_open", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_rollups_window", table_name="rollups")
    op.drop_table("rollups")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        for column in reversed(channel_columns()):
            batch_op.drop_column(column.name)
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("simulated")
