"""predictions.input_digest and holdout_images: annotated feedback whose input is a holdout
image is known as such before any retrain, so it never counts as waiting for one"""

import sqlalchemy as sa
from alembic import op

revision = "0016_holdout_images"
down_revision = "0015_feedback_left_out"


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default): no rebuild of a table others reference.
    op.add_column("predictions", sa.Column("input_digest", sa.String(40), nullable=True))
    op.create_table(
        "holdout_images",
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("digest", sa.String(40), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("holdout_images")
    if op.get_bind().dialect.name == "sqlite":  # 3.35+; no rebuild of the referenced table
        op.execute("ALTER TABLE predictions DROP COLUMN input_digest")
        return
    op.drop_column("predictions", "input_digest")
