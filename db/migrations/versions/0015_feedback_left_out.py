"""feedback.left_out_by_version_id: the retrain that left an annotated item out (its image is a
holdout image), so it no longer counts as waiting for a retrain"""

import sqlalchemy as sa
from alembic import op

revision = "0015_feedback_left_out"
down_revision = "0014_feedback_unlearned_index"
FOREIGN_KEY = "fk_feedback_left_out_by_version"


def upgrade() -> None:
    # A plain ADD COLUMN: rebuilding `feedback` (batch mode, for the foreign key) would drop a
    # table that annotations reference. SQLite keeps the column without the constraint.
    op.add_column("feedback", sa.Column("left_out_by_version_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name != "sqlite":
        op.create_foreign_key(
            FOREIGN_KEY, "feedback", "model_versions", ["left_out_by_version_id"], ["id"]
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # 3.35+; no rebuild of the referenced table
        op.execute("ALTER TABLE feedback DROP COLUMN left_out_by_version_id")
        return
    op.drop_constraint(FOREIGN_KEY, "feedback", type_="foreignkey")
    op.drop_column("feedback", "left_out_by_version_id")
