"""gated promotion: each channel's gate (absolute accuracy floor, largest allowed regression,
minimum feedback-slice size) and every gate decision with its evidence, outcome and override
"""

import sqlalchemy as sa
from alembic import op

from db.types import UTCDateTime

revision = "0012_promotion_gate"
down_revision = "0011_dataset_holdouts"


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gate_min_accuracy", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("gate_max_regression", sa.Float(), nullable=False, server_default="0.01")
        )
        batch_op.add_column(
            sa.Column("gate_min_slice", sa.Integer(), nullable=False, server_default="20")
        )
    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("channels.id"), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column(
            "production_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=True
        ),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("holdout_fingerprint", sa.String(64), nullable=True),
        sa.Column("failed", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("override_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_gate_decisions_channel_created", "gate_decisions", ["channel_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_gate_decisions_channel_created", table_name="gate_decisions")
    op.drop_table("gate_decisions")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("gate_min_slice")
        batch_op.drop_column("gate_max_regression")
        batch_op.drop_column("gate_min_accuracy")
