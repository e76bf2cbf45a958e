"""Where results and caches live. Knows nothing about HTTP or jobs."""

from storage.local import LocalStore, StorageError

__all__ = ["LocalStore", "StorageError"]
