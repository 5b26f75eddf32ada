"""index for the annotated items no version has learned yet (Loop page, retrain counts)"""

from alembic import op

revision = "0014_feedback_unlearned_index"
down_revision = "0013_dataset_flip_safe"


def upgrade() -> None:
    op.create_index(
        "ix_feedback_unlearned", "feedback", ["used_in_version_id", "review_status", "version_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_feedback_unlearned", table_name="feedback")
