"""The archive layouts of ``uws.archive`` read back by Python's zipfile and tarfile,
ZIP64 and pax headers included (reached with small limits rather than 4 GiB files), and
the Range parsing of ``uws.downloads``."""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from uws.archive import (USTAR_SIZE_LIMIT, ZIP32_LIMIT, FilePart, Member, crc32_of, tar_archive,
                         zip_archive)
from uws.downloads import Unsatisfiable, parse_range

WHEN = dt.datetime(2026, 12, 1, 3, 4, 6)
LONG = "x" * 100 + ".long-name-of-128-characters"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    made = {"a.fits": os.urandom(7000), LONG: os.urandom(513), "empty.txt": b"", "b.txt": b"b" * 512}
    for number, data in enumerate(made.values()):
        (tmp_path / f"f{number}").write_bytes(data)
    return made


def members(tmp_path: Path, files: dict[str, bytes]) -> list[Member]:
    paths = [tmp_path / f"f{number}" for number in range(len(files))]
    return [Member(name, FilePart.of(path), crc32_of(path)) for name, path in zip(files, paths)]


@pytest.mark.parametrize("limit", [ZIP32_LIMIT, 600, 1])
def test_zip_opens_with_every_file_stored_and_zip64_past_the_limit(tmp_path: Path, files: dict[str, bytes],
                                                                   limit: int) -> None:
    archive = zip_archive(members(tmp_path, files), WHEN, limit=limit)
    body = b"".join(archive.read())
    assert len(body) == archive.size
    with zipfile.ZipFile(io.BytesIO(body)) as opened:
        assert opened.testzip() is None
        assert {n: opened.read(n) for n in opened.namelist()} == files
        assert {i.date_time for i in opened.infolist()} == {(2026, 12, 1, 3, 4, 6)}
    # ZIP64 end records (signature PK\x06\x06) exactly when offsets pass the limit.
    assert (b"PK\x06\x06" in body[-200:]) == (limit < ZIP32_LIMIT)


@pytest.mark.parametrize("limit", [USTAR_SIZE_LIMIT, 100])
def test_tar_opens_with_pax_headers_for_long_names_and_large_sizes(tmp_path: Path, files: dict[str, bytes],
                                                                   limit: int) -> None:
    archive = tar_archive(members(tmp_path, files), WHEN, size_limit=limit)
    body = b"".join(archive.read())
    assert len(body) == archive.size and archive.size % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(body)) as opened:
        infos = opened.getmembers()
        assert {m.name: opened.extractfile(m).read() for m in infos} == files  # type: ignore[union-attr]
        assert {m.mtime for m in infos} == {int(WHEN.replace(tzinfo=dt.UTC).timestamp())}
        assert {m.mode for m in infos} == {0o644}
        large = {m.name for m in infos if "size" in m.pax_headers}
        assert large == ({n for n, d in files.items() if len(d) >= limit})
        assert next(m for m in infos if m.name == LONG).pax_headers["path"] == LONG


@pytest.mark.parametrize("form", [zip_archive, tar_archive])
def test_any_range_read_equals_that_slice_of_the_whole(tmp_path: Path, files: dict[str, bytes], form) -> None:  # type: ignore[no-untyped-def]
    archive = form(members(tmp_path, files), WHEN)
    whole = b"".join(archive.read())
    picks = random.Random(16)
    for _ in range(200):
        start = picks.randrange(archive.size)
        stop = picks.randrange(start, archive.size + 10)
        chunk = picks.choice([1, 100, 4096, 1 << 20])
        pieces = list(archive.read(start, stop, chunk=chunk))
        assert all(0 < len(p) <= chunk for p in pieces)
        assert b"".join(pieces) == whole[start:stop]


def test_the_same_files_give_the_same_bytes_and_etag(tmp_path: Path, files: dict[str, bytes]) -> None:
    first, second = zip_archive(members(tmp_path, files), WHEN), zip_archive(members(tmp_path, files), WHEN)
    assert b"".join(first.read()) == b"".join(second.read()) and first.etag == second.etag
    (tmp_path / "f0").write_bytes(os.urandom(7000))  # same size, new content
    assert zip_archive(members(tmp_path, files), WHEN).etag != first.etag
    assert tar_archive(members(tmp_path, files), WHEN).etag != tar_archive(members(tmp_path, files)[1:], WHEN).etag


@pytest.mark.parametrize(("header", "span"), [
    (None, None), ("bytes=0-9", (0, 10)), ("bytes=5-", (5, 100)), ("bytes=-10", (90, 100)),
    ("bytes=-500", (0, 100)), ("bytes=90-500", (90, 100)), ("BYTES = 1 - 2", (1, 3)),
    ("bytes=0-1,5-6", None), ("lines=0-9", None), ("bytes=3-1", None), ("bytes=-", None), ("bytes=x-", None),
])
def test_range_headers(header: str | None, span: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-160", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


class ArchiveFile(io.RawIOBase):
    """An archive as a seekable file that reads only the bytes asked for."""

    def __init__(self, archive) -> None:  # type: ignore[no-untyped-def]
        self.archive, self.position = archive, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = [offset, self.position + offset, self.archive.size + offset][whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = b"".join(self.archive.read(self.position, self.position + len(buffer)))
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


def test_a_zip_past_4_gib_for_real(tmp_path: Path) -> None:
    """A sparse 4.5 GB file (no disk used) and a small one after it: sizes and an offset past
    ZIP32's limit, read back by zipfile without reading the big file's contents."""
    big, small = tmp_path / "big", tmp_path / "small"
    with open(big, "wb") as fh:
        fh.truncate(4_500_000_000)
    small.write_bytes(b"after the big one")
    archive = zip_archive([Member("big.fits", FilePart.of(big), 0),
                           Member("small.txt", FilePart.of(small), crc32_of(small))], WHEN)
    with zipfile.ZipFile(io.BufferedReader(ArchiveFile(archive))) as opened:  # type: ignore[arg-type]
        infos = {i.filename: i for i in opened.infolist()}
        assert infos["big.fits"].file_size == 4_500_000_000
        assert infos["small.txt"].header_offset > 4_500_000_000
        assert opened.read("small.txt") == b"after the big one"
    with tarfile.open(fileobj=io.BufferedReader(ArchiveFile(tar_archive(  # type: ignore[arg-type]
            [Member("big.fits", FilePart.of(big)), Member("small.txt", FilePart.of(small))], WHEN)))) as opened:
        assert opened.getmember("big.fits").size == 4_500_000_000
        assert opened.extractfile("small.txt").read() == b"after the big one"  # type: ignore[union-attr]
