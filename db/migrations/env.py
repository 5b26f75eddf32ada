"""Alembic environment: uses the engine handed over by `db.migrate`, else `DATABASE_URL`."""

from __future__ import annotations

from alembic import context

from db.engine import make_engine
from db.models import Base
from db.settings import database_url

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or database_url())
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()


run_migrations()
