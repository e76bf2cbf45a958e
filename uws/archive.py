"""All of a job's results as one archive, ZIP or tar, laid out before a byte is sent.

An archive is a fixed sequence of parts: headers (bytes, made here) and the result files
(sent from disk as they are). Its size is known at once (Content-Length) and any byte
range maps onto the parts, so a download can be resumed (HTTP Range) and nothing is
built in memory: only the headers and a description of each file are held while it is
sent, about 0.7 KB per result for ZIP and 1.1 KB for tar (whose headers are 512-byte
blocks): 70 and 110 MB for 100,000 results, whatever their size.

- ZIP (APPNOTE 6.3.10): every entry STORED (method 0; results such as FITS cutouts
  hardly compress, and a compressed entry's size would not be known before it is sent),
  with its CRC-32 and sizes in the local header (no data descriptor), ZIP64 (§4.5.3,
  §4.3.14-15) for sizes or offsets from 4 GiB and for 65,535 entries or more.
- tar (POSIX.1-2001 pax interchange format): a ustar header per file, preceded by a pax
  extended header (typeflag ``x``) when its name is longer than 100 bytes or its size
  does not fit ustar's 11 octal digits (8 GiB).

Every entry gets the same time (the caller's: the job's creation time), mode 0644, no
owner: the same files give the same bytes, which a resumed download relies on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import struct
import zlib
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20  # bytes read from a file at a time

ZIP_MEDIA_TYPE = "application/zip"
TAR_MEDIA_TYPE = "application/x-tar"

ZIP32_LIMIT = 0xFFFFFFFF     # a size or offset from here on needs ZIP64 (0xFFFFFFFF marks it)
ZIP32_ENTRIES = 0xFFFF
USTAR_SIZE_LIMIT = 8 ** 11   # sizes below it fit ustar's 11 octal digits
BLOCK = 512


@dataclass(frozen=True)
class FilePart:
    """One stored file, as it was when the archive was laid out."""

    path: str  # not a Path: a str takes a third of the memory, and there is one per result
    size: int
    mtime_ns: int
    inode: int

    @staticmethod
    def of(path: Path | str) -> "FilePart":
        st = os.stat(path)
        return FilePart(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class Member:
    """A file of the archive: its name there, and (ZIP only) its CRC-32."""

    name: str
    file: FilePart
    crc32: int = 0


Part = bytes | FilePart | int  # an int: that many zero bytes (tar's padding), held as a number


class Archive:
    """A byte sequence made of header bytes and file contents; read by range."""

    def __init__(self, media_type: str, parts: Sequence[Part]) -> None:
        self.media_type = media_type
        self.parts = [p for p in parts if _length(p)]
        self.starts: list[int] = []
        offset = 0
        for part in self.parts:
            self.starts.append(offset)
            offset += _length(part)
        self.size = offset

    @property
    def etag(self) -> str:
        """A strong entity tag (RFC 9110 §8.8.3): equal only for the same bytes. Headers
        are hashed as they are (a ZIP's hold the CRC-32s); files by name, size, mtime and
        inode (a result is replaced only by a new file renamed into place)."""
        digest = hashlib.sha256(self.media_type.encode())
        for part in self.parts:
            if isinstance(part, bytes):
                digest.update(b"h%d:" % len(part) + part)
            elif isinstance(part, int):
                digest.update(b"z%d:" % part)
            else:
                digest.update(f"f{part.path}:{part.size}:{part.mtime_ns}:{part.inode}".encode())
        return '"' + digest.hexdigest()[:32] + '"'

    def read(self, start: int = 0, stop: int | None = None, chunk: int = CHUNK) -> Iterator[bytes]:
        """The bytes from ``start`` up to ``stop`` (exclusive), in pieces of at most ``chunk``."""
        stop = self.size if stop is None else min(stop, self.size)
        if start >= stop:
            return
        index = bisect_right(self.starts, start) - 1
        position = start
        while position < stop:
            part, base = self.parts[index], self.starts[index]
            begin, end = position - base, min(_length(part), stop - base)
            if isinstance(part, bytes):
                for offset in range(begin, end, chunk):
                    yield part[offset:min(offset + chunk, end)]
            elif isinstance(part, int):
                for offset in range(begin, end, chunk):
                    yield bytes(min(chunk, end - offset))
            else:
                yield from _file_bytes(part, begin, end, chunk)
            position = base + end
            index += 1


def _length(part: Part) -> int:
    if isinstance(part, int):
        return part
    return len(part) if isinstance(part, bytes) else part.size


def _file_bytes(part: FilePart, begin: int, end: int, chunk: int) -> Iterator[bytes]:
    with open(part.path, "rb") as fh:
        fh.seek(begin)
        left = end - begin
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                raise OSError(f"{os.path.basename(part.path)} is shorter than when the archive was laid out")
            left -= len(data)
            yield data


def crc32_of(path: Path, chunk: int = CHUNK) -> int:
    """The CRC-32 (as ZIP and zlib compute it) of a file, read once in pieces."""
    crc = 0
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            crc = zlib.crc32(data, crc)
    return crc


# --- ZIP ----------------------------------------------------------------------------------

def _dos_time(when: dt.datetime) -> tuple[int, int]:
    """MS-DOS date and time (APPNOTE §4.4.6): 2-second steps, years 1980-2107."""
    when = min(max(when, dt.datetime(1980, 1, 1)), dt.datetime(2107, 12, 31, 23, 59, 58))
    return ((when.year - 1980) << 9 | when.month << 5 | when.day,
            when.hour << 11 | when.minute << 5 | when.second // 2)


def zip_archive(members: Sequence[Member], when: dt.datetime, limit: int = ZIP32_LIMIT) -> Archive:
    """A ZIP of STORED entries. ``limit``: sizes and offsets from it on are written as ZIP64
    (the format's own limit; smaller only to test the ZIP64 path)."""
    date, time = _dos_time(when)
    parts: list[Part] = []
    central: list[bytes] = []
    offset = 0
    for member in members:
        name = member.name.encode("ascii")
        size = member.file.size
        big = size >= limit
        # §4.5.3: the local header's ZIP64 field holds both sizes.
        local_extra = struct.pack("<HHQQ", 1, 16, size, size) if big else b""
        needed = 45 if big or offset >= limit else 20
        shown = 0xFFFFFFFF if big else size
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, needed, 0, 0, time, date, member.crc32,
                            shown, shown, len(name), len(local_extra)) + name + local_extra
        # §4.5.3: the central header's ZIP64 field holds only the values that overflow, in order.
        values = ([size, size] if big else []) + ([offset] if offset >= limit else [])
        extra = struct.pack(f"<HH{len(values)}Q", 1, 8 * len(values), *values) if values else b""
        central.append(struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0300 | needed, needed, 0, 0, time, date, member.crc32,
            shown, shown, len(name), len(extra), 0, 0, 0, 0o100644 << 16,
            0xFFFFFFFF if offset >= limit else offset) + name + extra)
        parts += [local, member.file]
        offset += len(local) + size
    directory = b"".join(central)
    parts.append(directory)
    parts.append(_zip_end(len(members), offset, len(directory), limit))
    return Archive(ZIP_MEDIA_TYPE, parts)


def _zip_end(entries: int, directory_offset: int, directory_size: int, limit: int) -> bytes:
    """The end of central directory record (§4.3.16), after the ZIP64 one and its locator
    (§4.3.14, §4.3.15) when a value overflows."""
    zip64 = entries >= ZIP32_ENTRIES or directory_offset >= limit or directory_size >= limit
    end = b""
    if zip64:
        end_offset = directory_offset + directory_size
        end = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x0300 | 45, 45, 0, 0, entries, entries,
                          directory_size, directory_offset)
        end += struct.pack("<IIQI", 0x07064B50, 0, end_offset, 1)
    return end + struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, min(entries, ZIP32_ENTRIES), min(entries, ZIP32_ENTRIES),
        0xFFFFFFFF if directory_size >= limit else directory_size,
        0xFFFFFFFF if directory_offset >= limit else directory_offset, 0)


# --- tar ----------------------------------------------------------------------------------

def tar_archive(members: Sequence[Member], when: dt.datetime, size_limit: int = USTAR_SIZE_LIMIT) -> Archive:
    """A pax tar. ``size_limit``: sizes from it on go into a pax header (ustar's own limit;
    smaller only to test that path)."""
    mtime = int(when.replace(tzinfo=dt.UTC).timestamp()) if when.tzinfo is None else int(when.timestamp())
    parts: list[Part] = []
    for member in members:
        name = member.name.encode("utf-8")
        size = member.file.size
        records = {}
        if len(name) > 100:
            records["path"] = member.name
        if size >= size_limit:
            records["size"] = str(size)
        if records:
            data = b"".join(_pax_record(k, v) for k, v in records.items())
            parts.append(_ustar_header(b"PaxHeaders/" + name[:89], len(data), mtime, b"x") + _padded(data))
        parts.append(_ustar_header(name[:100], 0 if "size" in records else size, mtime, b"0"))
        parts.append(member.file)
        parts.append(-size % BLOCK)
    parts.append(2 * BLOCK)  # the end of the archive: two zero blocks
    return Archive(TAR_MEDIA_TYPE, parts)


def _pax_record(key: str, value: str) -> bytes:
    """'<length> <key>=<value>\\n', the length counting itself (POSIX pax, extended header)."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _ustar_header(name: bytes, size: int, mtime: int, typeflag: bytes) -> bytes:
    header = (name.ljust(100, b"\0") + _octal(0o644, 8) + _octal(0, 8) + _octal(0, 8)
              + _octal(size, 12) + _octal(mtime, 12) + b" " * 8 + typeflag + bytes(100)
              + b"ustar\x0000" + bytes(32) + bytes(32) + _octal(0, 8) + _octal(0, 8) + bytes(155))
    header = header.ljust(BLOCK, b"\0")
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]
