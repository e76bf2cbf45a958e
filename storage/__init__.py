"""Where results and caches live. Knows nothing about HTTP or jobs.

``ResultStore`` is the protocol the job layer writes through; ``LocalStore`` keeps
results on a local (or shared network) file system.
"""

from storage.local import LocalStore, StorageError
from storage.protocol import ResultStore

__all__ = ["LocalStore", "ResultStore", "StorageError"]
