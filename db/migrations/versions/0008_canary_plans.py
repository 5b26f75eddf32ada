"""stepped canaries: the plan and state of each canary, and every decision the controller took
on it (advance, hold, rollback, promote) with its reason and evidence
"""

import sqlalchemy as sa
from alembic import op

from db.types import UTCDateTime

revision = "0008_canary_plans"
down_revision = "0007_users"


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column(
            "candidate_version_id",
            sa.Integer(),
            sa.ForeignKey("model_versions.id"),
            nullable=False,
        ),
        sa.Column(
            "production_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=True
        ),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("step_started_at", UTCDateTime(), nullable=False),
        sa.Column("previous_step_started_at", UTCDateTime(), nullable=True),
        sa.Column("min_requests", sa.Integer(), nullable=False, server_default="200"),
        sa.Column("min_seconds", sa.Integer(), nullable=False, server_default="300"),
        sa.Column("max_error_increase", sa.Float(), nullable=False, server_default="0.02"),
        sa.Column("max_p95_increase", sa.Float(), nullable=False, server_default="0.5"),
        sa.Column("status", sa.String(20), nullable=False, server_default="running"),
        sa.Column("started_by", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_canaries_channel_status", "canaries", ["channel_id", "status"])
    op.create_table(
        "canary_decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("canary_id", sa.Integer(), sa.ForeignKey("canaries.id"), nullable=False),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("traffic", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_canary_decisions_canary_id", "canary_decisions", ["canary_id"])
    op.create_index(
        "ix_canary_decisions_channel_created", "canary_decisions", ["channel_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_canary_decisions_channel_created", table_name="canary_decisions")
    op.drop_index("ix_canary_decisions_canary_id", table_name="canary_decisions")
    op.drop_table("canary_decisions")
    op.drop_index("ix_canaries_channel_status", table_name="canaries")
    op.drop_table("canaries")
