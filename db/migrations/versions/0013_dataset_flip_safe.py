"""datasets record whether a mirrored image keeps its class (flip_safe), which chooses the
default augmentation; existing rows get the default of their source (Keras cifar10 and
fashion_mnist yes, everything else no)
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_dataset_flip_safe"
down_revision = "0004_feedback_status_counts"


def upgrade() -> None:
    # A plain ADD COLUMN: batch mode would rebuild `datasets`, and SQLite refuses to drop a
    # table that rows of other tables reference (foreign keys are on).
    op.add_column(
        "datasets", sa.Column("flip_safe", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    datasets = sa.table(
        "datasets", sa.column("source", sa.String), sa.column("location", sa.String),
        sa.column("flip_safe", sa.Boolean),
    )  # fmt: skip
    op.execute(
        datasets.update()
        .where(datasets.c.source == "keras", datasets.c.location.in_(["cifar10", "fashion_mnist"]))
        .values(flip_safe=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("flip_safe")
