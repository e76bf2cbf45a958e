"""What the job layer needs of a results store: keys in, bytes out.

Keys are relative POSIX paths such as ``jobs/<job>/<result>``. A store makes a key
visible only once it is written completely. The local disk store implements this; an
S3-compatible store would too, answering ``local_path`` with None.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol


class ResultStore(Protocol):
    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Open ``key`` for writing; it appears under its name only on success."""
        ...

    def put_in_place(self, key: str, data: bytes) -> bool:
        """Write a new ``key`` under its own name at once, for a result listed only after
        this returns (until then nothing names it; a failed write leaves a file nothing
        lists). A key that exists already is replaced whole, as ``writer`` does; False then."""
        ...

    def size(self, key: str) -> int: ...

    def local_path(self, key: str) -> Path | None:
        """The file holding ``key`` on this host, or None when it is not stored here."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete a key or every key below a prefix; missing keys are not an error."""
        ...

    def children(self, prefix: str) -> list[str]:
        """Names directly below a prefix (none when it does not exist)."""
        ...

    def age(self, key: str) -> float:
        """Seconds since a key (or the folder of a prefix) was last modified."""
        ...

    def check_writable(self) -> None:
        """Raise OSError unless something can be written now."""
        ...
