"""feedback.left_out_by_version_id: the retrain that left an annotated item out (its image is a
holdout image), so it no longer counts as waiting for a retrain"""

import sqlalchemy as sa
from alembic import op

revision = "0015_feedback_left_out"
down_revision = "0014_feedback_unlearned_index"


def upgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("left_out_by_version_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_feedback_left_out_by_version", "model_versions", ["left_out_by_version_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_constraint("fk_feedback_left_out_by_version", type_="foreignkey")
        batch_op.drop_column("left_out_by_version_id")
