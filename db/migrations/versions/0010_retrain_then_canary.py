"""retrain from a channel with "canary when done": a flag on the job and when it was handed over"""

import sqlalchemy as sa
from alembic import op

from db.types import UTCDateTime

revision = "0010_retrain_then_canary"
down_revision = "0008_canary_plans"


def upgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("then_canary", sa.Boolean(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("handed_to_canary_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_column("handed_to_canary_at")
        batch_op.drop_column("then_canary")
