"""holdout_images, predictions.input_digest and feedback.holdout_image: feedback on a holdout
image is known as such when it arrives, so it never counts as waiting for a retrain; the index
of those counts now covers the left-out and holdout columns"""

import sqlalchemy as sa
from alembic import op

from db.migrations.columns import drop_column

revision = "0016_holdout_images"
down_revision = "0015_feedback_left_out"
TRAINABLE = ("review_status", "holdout_image", "used_in_version_id", "left_out_by_version_id",
             "version_id")  # fmt: skip
UNLEARNED = ("used_in_version_id", "review_status", "version_id")  # 0014's


def upgrade() -> None:
    op.create_table(
        "holdout_images",
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("digest", sa.String(40), primary_key=True),
    )
    # Plain ADD COLUMNs (server_default "0", not sa.false(): no rebuild of referenced tables).
    op.add_column("predictions", sa.Column("input_digest", sa.String(40), nullable=True))
    op.add_column(
        "feedback",
        sa.Column("holdout_image", sa.Boolean(), nullable=False, server_default="0"),
    )
    op.drop_index("ix_feedback_unlearned", table_name="feedback")
    op.create_index("ix_feedback_trainable", "feedback", list(TRAINABLE))


def downgrade() -> None:
    op.drop_index("ix_feedback_trainable", table_name="feedback")
    op.create_index("ix_feedback_unlearned", "feedback", list(UNLEARNED))
    drop_column("feedback", "holdout_image")
    drop_column("predictions", "input_digest")
    op.drop_table("holdout_images")
