"""Persistence: SQLModel tables, the async database engine, media files and Redis.

Exceptions::

    StorageError
    ├── MediaNotFound
    └── MediaTooLarge
"""


class StorageError(Exception):
    """Root of storage failures."""


class MediaNotFound(StorageError):
    """A media object id that has no stored bytes."""


class MediaTooLarge(StorageError):
    """A media object over the configured size cap."""
