"""Errors that repository functions raise; callers turn them into 4xx answers or form messages."""


class RegistryError(ValueError):
    """Input the registry refuses; the message says why and is safe to show to a user."""


class NotFoundError(RegistryError):
    """The named object does not exist."""


class ConflictError(RegistryError):
    """The object exists but is in a state that forbids the change."""
