"""Errors that repository functions raise; callers turn them into 4xx answers or form messages.

Each error names its `kind` so that a caller maps it in one lookup (the API: kind → HTTP status)
instead of testing classes or matching messages."""


class RegistryError(ValueError):
    """Input the registry refuses; the message says why and is safe to show to a user."""

    kind = "invalid"


class NotFoundError(RegistryError):
    """The named object does not exist."""

    kind = "not_found"


class ConflictError(RegistryError):
    """The object exists but is in a state that forbids the change."""

    kind = "conflict"
