"""covering index for the per-status feedback counts (Overview, Loop, Retrain) at 1M items

Numbered 0004 (a free number) but applied after 0012: with a million feedback items, counting
pending items per channel and rating, and annotated items not yet learned per model, looked up
every matching row in the table; this index answers both from the index alone.
"""

from alembic import op

revision = "0004_feedback_status_counts"
down_revision = "0012_promotion_gate"

COLUMNS = ["review_status", "channel_id", "rating", "version_id", "used_in_version_id"]


def upgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_status_counts", COLUMNS, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_status_counts")
