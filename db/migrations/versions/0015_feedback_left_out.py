"""feedback.left_out_by_version_id: the retrain that left an annotated item out (its image is a
holdout image), so it no longer counts as waiting for a retrain"""

from db.migrations.columns import add_reference, drop_column

revision = "0015_feedback_left_out"
down_revision = "0014_feedback_unlearned_index"
FOREIGN_KEY = "fk_feedback_left_out_by_version"


def upgrade() -> None:
    # A plain ADD COLUMN: rebuilding `feedback` (batch mode, for the foreign key) would drop a
    # table that annotations reference.
    add_reference("feedback", "left_out_by_version_id", "model_versions", FOREIGN_KEY)


def downgrade() -> None:
    drop_column("feedback", "left_out_by_version_id", FOREIGN_KEY)
