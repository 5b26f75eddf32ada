"""indexes for the dashboard's per-channel traffic and review-queue queries"""

from alembic import op

revision = "0002_dashboard_indexes"
down_revision = "0001_initial"


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_predictions_channel_created_latency",
            ["channel_id", "created_at", "latency_ms"],
            unique=False,
        )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(
            "ix_feedback_channel_status",
            ["channel_id", "review_status", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_channel_status")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_channel_created_latency")
