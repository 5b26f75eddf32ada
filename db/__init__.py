"""ChannelHub registry: SQLAlchemy models, migrations and repository functions."""
