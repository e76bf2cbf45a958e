"""Result storage on a local (or shared network) file system.

Keys are relative POSIX paths such as ``jobs/<job>/<result>``. Writes go to a
temporary file beside the target and are renamed into place, so a reader never
sees half a file and a crash never leaves one under a real name; but for
``put_in_place``, which writes a new key directly, for results the job lists only
once written (a crash may leave a partial file that nothing lists).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class StorageError(Exception):
    """A key is malformed or the store cannot be written."""


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or "\\" in p for p in parts):
            raise StorageError(f"malformed storage key {key!r}")
        return self.root.joinpath(*parts)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """Open ``key`` for writing; the file appears under its name only on success."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; nginx (another user) sends results by X-Accel-Redirect
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_in_place(self, key: str, data: bytes) -> bool:
        """No temporary file and rename for a new key: a bulk part writes thousands of small
        files, each listed by the job only once written (``writer``'s temporary file and
        rename were two thirds of the time of each). A key already there (a part run again)
        may be listed and read: it is replaced whole."""
        target = self.path(key)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            try:
                fd = os.open(target, flags, 0o644)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, flags, 0o644)
        except FileExistsError:
            self.put_bytes(key, data)
            return False
        try:
            os.fchmod(fd, 0o644)  # whatever the umask: nginx (another user) sends results
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return True

    def put_bytes(self, key: str, data: bytes) -> int:
        with self.writer(key) as fh:
            fh.write(data)
        return len(data)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def local_path(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path.is_file() else None

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def delete_prefix(self, prefix: str) -> None:
        """Delete a key or every key below a prefix; missing keys are not an error."""
        target = self.path(prefix)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def children(self, prefix: str) -> list[str]:
        """Names directly below a prefix (none when it does not exist)."""
        folder = self.path(prefix)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def age(self, key: str) -> float:
        """Seconds since a key (file or folder) was last modified."""
        return time.time() - self.path(key).stat().st_mtime

    def check_writable(self) -> None:
        """Raise OSError unless a file can be created in the store (safe to call concurrently)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
            pass
