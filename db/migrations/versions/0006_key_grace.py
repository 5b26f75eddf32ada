"""API keys operations can live with: the previous key's hash and grace expiry, a per-key rate
limit and the key's last use, on the channel
"""

import sqlalchemy as sa
from alembic import op

from db.types import UTCDateTime

revision = "0006_key_grace"
down_revision = "0003_live_monitoring"


def channel_columns() -> tuple[sa.Column, ...]:
    """Fresh columns each time (a Column joins the table it is added to)."""
    return (
        sa.Column("previous_api_key_hash", sa.String(128), nullable=True),
        sa.Column("previous_key_expires_at", UTCDateTime(), nullable=True),
        sa.Column("rate_limit_per_s", sa.Float(), nullable=True),
        sa.Column("api_key_last_used_at", UTCDateTime(), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        for column in channel_columns():
            batch_op.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        for column in reversed(channel_columns()):
            batch_op.drop_column(column.name)
