"""Aladin Lite, the sky view of the cutout page, fetched from the npm registry into the
pages' static folder (git-ignored): ``python -m soda.web.pages.vendor``. The page works
without it, just without the sky view.

The package's tarball is checked against the registry's SHA-512 integrity value before
anything is unpacked; only ``dist/aladin.js`` and the licence files are kept.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

from soda.web.pages.site import ALADIN

REGISTRY = "https://registry.npmjs.org/aladin-lite"
VERSION = "3.8.2"             # the version the page's script is written for
MAX_BYTES = 20 * 1024 * 1024  # the tarball is under 1 MB; anything far larger is not it
KEPT = {"package/dist/aladin.js": "aladin.js", "package/LICENSE": "LICENSE",
        "package/COPYING": "COPYING", "package/COPYING.LESSER": "COPYING.LESSER"}


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - a fixed https URL
        body = answer.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ValueError(f"{url} is larger than {MAX_BYTES} bytes")
    return body


def fetch(target: Path = ALADIN.parent, version: str = VERSION, timeout: float = 60) -> Path:
    """Aladin Lite ``version`` unpacked into ``target``; returns the path of aladin.js."""
    meta = json.loads(_get(f"{REGISTRY}/{version}", timeout))
    tarball, integrity = meta["dist"]["tarball"], meta["dist"]["integrity"]
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise ValueError(f"unexpected integrity algorithm {algorithm!r}")
    body = _get(tarball, timeout)
    if base64.b64encode(hashlib.sha512(body).digest()).decode() != expected:
        raise ValueError(f"{tarball} does not match the registry's SHA-512")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = KEPT.get(member.name)
            if name is None or not member.isfile():
                continue
            data = archive.extractfile(member)
            assert data is not None
            (target / (name + ".part")).write_bytes(data.read())
            (target / (name + ".part")).replace(target / name)
    return target / "aladin.js"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION)
    args = parser.parse_args(argv)
    print(fetch(version=args.version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
