"""An archive of a job's results from a real ``cutout serve``: the server's resident memory
while it sends 100 MB, and a download cut short and resumed with Range and If-Range."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from pathlib import Path

import httpx

from conftest import base_env, eventually, start_server


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_large_archive_is_sent_in_bounded_memory_and_resumes(tmp_path: Path, demo_root: Path) -> None:
    server, base = start_server(base_env(tmp_path / "data", demo_root), tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            made = client.post("/selftest", data={"RESULTS": "100", "SIZE": str(1 << 20), "PHASE": "RUN"})
            assert made.status_code == 303, made.text
            job = made.headers["location"]
            eventually(lambda: client.get(f"{job}/phase").text == "COMPLETED", timeout=60)
            url = f"{job}/results.zip"
            client.get(f"{job}/results.tar", headers={"Range": "bytes=0-1000"})  # the code paths warm
            head = client.head(url)
            size, etag = int(head.headers["content-length"]), head.headers["etag"]
            assert size > 100 * (1 << 20)

            before = resident_bytes(server.pid)
            peak = [before]
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.01):
                    peak[0] = max(peak[0], resident_bytes(server.pid))

            watcher = threading.Thread(target=watch)
            watcher.start()
            whole = hashlib.sha256()
            received = 0
            try:
                with client.stream("GET", url) as r:
                    assert r.status_code == 200 and r.headers["etag"] == etag
                    for piece in r.iter_bytes():
                        whole.update(piece)
                        received += len(piece)
            finally:
                done.set()
                watcher.join()
            assert received == size
            growth = peak[0] - before
            assert growth < 40 * (1 << 20), f"the server grew {growth / 1e6:.0f} MB sending {size / 1e6:.0f} MB"

            # Cut after about a third, then resumed from what arrived.
            first = bytearray()
            with client.stream("GET", url) as r:
                for piece in r.iter_bytes():
                    first += piece
                    if len(first) > size // 3:
                        break
            with client.stream("GET", url, headers={"Range": f"bytes={len(first)}-", "If-Range": etag}) as r:
                assert r.status_code == 206
                assert r.headers["content-range"] == f"bytes {len(first)}-{size - 1}/{size}"
                rest = r.read()
            joined = bytes(first) + rest
            assert hashlib.sha256(joined).hexdigest() == whole.hexdigest()
            with zipfile.ZipFile(io.BytesIO(joined)) as archive:
                assert len(archive.namelist()) == 100 and archive.testzip() is None
    finally:
        server.stop()
