"""Every example of README.md and docs/*.md, run as a newcomer runs them: in order, against
a live ``cutout serve`` on the shipped defaults, started in an empty folder.

- Examples are the shell (curl, cutout, ...) and Python code blocks, fenced or indented.
  Each shell line is one command, run by bash in one working folder; the variables a
  command sets (``JOB=$(curl ...)``, ``export TOKEN=...``) are there for the next ones,
  as in the reader's terminal, and a Python example sees what the shell exported.
- ``cutout serve`` (the quick start; again with ``CUTOUT_SELFTEST_JOBS=true`` for the job
  walk-through) is run by the test itself (``quickstart_server.py``), on a free port, with
  the environment assignments the example writes and no other setting; ``127.0.0.1:8000`` in the
  examples is rewritten to that port, the one rewrite. ``.venv`` in that folder is the
  environment the tests run in, and the checkout's code comes first on PYTHONPATH (what
  ``pip install -e .`` gives).
- Every answer is checked: the exit status (0, unless listed in EXPECTED_ERRORS), the HTTP
  status and content type (``curl`` on PATH is a wrapper that adds ``-D`` to keep the
  response headers and records its arguments; nothing else changes), that XML and JSON
  bodies parse, that every FITS, PNG or JPEG file an example saves opens, and what the
  README promises in PROMISES.
- NOT_RUN lists the examples that cannot run here, with the reason; they are still
  syntax-checked (``bash -n``, ``compile``). A code block that is neither an example nor
  prose-like (a diagram) must not start a line with a command.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from astropy.io import fits
from lxml import etree
from PIL import Image

from conftest import assert_uws
from quickstart_server import QuickStartServer, quickstart_env

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT_URL = "127.0.0.1:8000"

# Commands a shell example may start with (after VAR=value assignments).
SHELL_COMMANDS = {"curl", "export", "printf", "python3", ".venv/bin/cutout", ".venv/bin/pip", ".venv/bin/python",
                  ".venv/bin/pytest", "cutout", "cmp", "docker", "createdb"}

# Examples (a substring of the command, or of the Python block) that cannot run here, and why.
NOT_RUN = {
    "pip install -q -e '.[test]' && .venv/bin/pytest":
        "runs the whole test suite, this test among them",
    "pip install astrocut":
        "installs a package from the network and runs minutes of benchmarks",
    "redis.example.org:6379/0 .venv/bin/cutout serve --workers":
        "the distributed shape needs the reader's PostgreSQL and Redis servers (tests/e2e/test_distributed.py runs it)",
    "redis.example.org:6379/0 .venv/bin/cutout worker":
        "a worker needs the reader's PostgreSQL and Redis servers, and runs until stopped",
    "docker compose up":
        "builds images and runs containers; there is no Docker here (tests/e2e/test_nginx.py runs the nginx template)",
    "db.example.org/cutout .venv/bin/cutout backup":
        "needs the reader's PostgreSQL server; tests/e2e/test_backup_restore.py runs the command against one",
    "createdb --host db.example.org":
        "needs the reader's PostgreSQL server; tests/e2e/test_backup_restore.py makes a fresh database instead",
    "db.example.org/cutout_restored CUTOUT_DATA_DIR=/srv/cutout/restored .venv/bin/cutout restore":
        "needs the reader's PostgreSQL server; tests/e2e/test_backup_restore.py runs the command against one",
}
# The quick start installs, then serves: the installing is what made the environment this
# test runs in; the serving is done by the test (SERVE below).
INSTALL_STEPS = {"python3 -m venv .venv", ".venv/bin/pip install -q -e ."}
SERVE = re.compile(r"^((?:[A-Z_][A-Z0-9_]*=\S+\s+)*)\.venv/bin/cutout serve\s*&?$")

# Examples that answer an error on purpose: substring -> (exit status, HTTP status, body start).
EXPECTED_ERRORS = {
    "DES1234-5678_r": (22, 400, "UsageError: ID 'ivo://demo.cutout/des?DES1234-5678_r' names no dataset"),
}


def _phase(body: str) -> str | None:
    return assert_uws(body.encode()).findtext("{http://www.ivoa.net/xml/UWS/v1.0}phase")


# What the README says an answer holds: substring of the command -> check of its output.
PROMISES: dict[str, Callable[[str], bool]] = {
    "$JOB/phase           # PENDING": lambda out: out == "PENDING",
    '"$JOB?WAIT=30&PHASE=EXECUTING"    # ... and while it is EXECUTING: COMPLETED':
        lambda out: _phase(out) == "COMPLETED",
    '"$JOB?WAIT=30&PHASE=EXECUTING"   # ... once it has finished: its results':
        lambda out: _phase(out) == "COMPLETED" and "01_DES0139-4457_r.fits" in out,
    "$JOB/results/result-1.txt": lambda out: len(out) > 0,
    "# once finished: a file per row, the manifest":
        lambda out: _phase(out) == "COMPLETED" and "0000001_first.fits" in out and "0000002_second.fits" in out,
    '"$JOB/results/manifest.csv"': lambda out: [line.split(",")[5] for line in out.splitlines()[1:]] == ["ok", "ok"],
    "$JOB/phase           # ABORTED": lambda out: out == "ABORTED",
    "/whoami": lambda out: json.loads(out) == {"user": "alice", "authenticated": True, "method": "token"},
    '"http://127.0.0.1:8000/async?LAST=10"': lambda out: len(assert_uws(out.encode())) == 1,
    "/usage": lambda out: json.loads(out)["user"] == "alice",
    "cutout token list --user alice": lambda out: "\tlaptop\t" in out,
    "/openapi.json": lambda out: json.loads(out)["openapi"] == "3.1.0" and "/sync" in json.loads(out)["paths"],
    'curl -fsS "$JOB?WAIT=30&PHASE=EXECUTING"': lambda out: _phase(out) == "COMPLETED",
    '$TOKEN" "$JOB?WAIT=30&PHASE=EXECUTING"': lambda out: _phase(out) == "COMPLETED",
    "cutout backup backup-1": lambda out: out.startswith("backed up into backup-1: sqlite database"),
    "cutout restore backup-1": lambda out: out.startswith("restored from backup-1: sqlite database"),
    "cutout token list --user bob": lambda out: "\tpipeline\t" in out,
    "/stats.json?days=7": lambda out: (json.loads(out)["days"] == 7 and len(json.loads(out)["per_day"]) == 7
                                       and {k["kind"] for k in json.loads(out)["by_kind"] if k["cutouts"]}
                                       == {"sync", "async", "bulk"}),
}


# --- finding the examples -----------------------------------------------------------------------

@dataclass
class Block:
    doc: str
    line: int
    text: str
    lang: str = ""


@dataclass
class Example:
    doc: str
    line: int
    kind: str    # "shell" (one command) or "python" (one block)
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text.splitlines()[0][:100]}"


def code_blocks(doc: Path, name: str) -> Iterator[Block]:
    """Fenced blocks, and indented ones (4 spaces, after a blank line)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(\s*)(```+|~~~+)\s*(\w*)", line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence[2]))
            yield Block(name, i + 2, "\n".join(lines[i + 1:end]), fence[3].lower())
            i = end + 1
            continue
        if line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            start = i
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                i += 1
            body = [raw[4:] for raw in lines[start:i]]
            while body and not body[-1].strip():
                body.pop()
            yield Block(name, start + 1, "\n".join(body))
            continue
        i += 1


def command_word(command: str) -> str:
    try:
        words = shlex.split(command, comments=True)
    except ValueError:   # prose, with an apostrophe
        return ""
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) and "$(" not in words[0]:
        words.pop(0)
    if not words:
        return ""
    if words[0] == "export" or "$(" in words[0]:
        inner = re.search(r"\$\((\S+)", command)
        return inner[1] if inner else words[0]
    return words[0]


def shell_commands(block: Block) -> list[tuple[int, str]]:
    commands, pending, first = [], "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            first = offset
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip() and not pending.strip().startswith("#"):
            commands.append((block.line + first, pending.strip()))
        pending = ""
    return commands


def is_python(block: Block) -> bool:
    if block.lang in ("python", "py"):
        return True
    try:
        compile(block.text, "<example>", "exec")
    except SyntaxError:
        return False
    return bool(re.search(r"^(import|from) \w", block.text, re.MULTILINE))


def classify(block: Block) -> list[Example]:
    """The examples of a block: one Python example, one per shell command, or none (prose)."""
    if is_python(block):
        return [Example(block.doc, block.line, "python", block.text)]
    commands = shell_commands(block)
    known = [command_word(c) in SHELL_COMMANDS for _, c in commands]
    if commands and all(known):
        return [Example(block.doc, line, "shell", c) for line, c in commands]
    assert not any(known), (f"{block.doc}:{block.line}: a code block mixes commands with other lines; "
                            f"this test cannot tell what to run:\n{block.text}")
    return []


def examples() -> tuple[list[Example], list[Block]]:
    found: list[Example] = []
    prose: list[Block] = []
    for doc in DOCS:
        for block in code_blocks(doc, doc.relative_to(ROOT).as_posix()):
            made = classify(block)
            found += made
            if not made:
                prose.append(block)
    return found, prose


# --- running them ---------------------------------------------------------------------------------

CURL_WRAPPER = """#!/bin/sh
printf '%s\\n' "$@" > "$EXAMPLE_HEADERS.args"
exec {curl} -D "$EXAMPLE_HEADERS" "$@"
"""

# Runs one command after the ones before, keeping the variables it sets (not those of the
# environment the test started with, nor bash's own) for the next.
RUN = r"""__state=$1; __command=$2
source "$__state"
source "$__command"
__rc=$?
for __name in $(compgen -v); do
  case " $__INHERITED " in *" $__name "*) continue ;; esac
  case "$__name" in __*|BASH*|FUNCNAME|PIPESTATUS|_|LINENO|RANDOM|SECONDS|SRANDOM|EPOCH*) continue ;; esac
  __declared=$(declare -p "$__name" 2>/dev/null) || continue
  [[ $__declared =~ ^declare\ -[a-zA-Z]*r ]] && continue
  printf '%s\n' "$__declared"
done > "$__state.next"
mv "$__state.next" "$__state"
exit $__rc
"""


@dataclass
class Answer:
    rc: int
    out: str
    err: str
    args: list[str] = field(default_factory=list)
    status: int | None = None
    content_type: str = ""


class Reader:
    """A newcomer's two terminals: the server in one, the examples in the other."""

    def __init__(self, folder: Path, harness: Path) -> None:
        self.folder = folder       # the reader's: .venv, cutout-data/ and what examples save
        self.harness = harness     # the test's: commands, answers, the curl wrapper, logs
        harness.mkdir()
        tools = harness / "bin"
        tools.mkdir()
        curl = shutil.which("curl")
        assert curl, "the README's examples need curl"
        (tools / "curl").write_text(CURL_WRAPPER.format(curl=shlex.quote(curl)))
        (tools / "curl").chmod(0o755)
        self.state = harness / "state.sh"
        self.state.write_text("")
        self.env = quickstart_env()
        self.env["PATH"] = f"{tools}{os.pathsep}{self.env.get('PATH', '')}"
        self.quickstart = QuickStartServer(folder, harness / "serve.log", self.env)
        self.port = self.quickstart.port
        self.count = 0

    @property
    def server(self) -> subprocess.Popen | None:  # type: ignore[type-arg]
        return self.quickstart.process

    def rewrite(self, text: str) -> str:
        return text.replace(DEFAULT_URL, f"127.0.0.1:{self.port}")

    # --- the server's terminal

    def serve(self, assignments: dict[str, str]) -> None:
        self.quickstart.serve(assignments)

    def stop(self) -> None:
        self.quickstart.stop()

    # --- the examples' terminal

    def shell(self, command: str) -> Answer:
        self.count += 1
        script = self.harness / f"command-{self.count}.sh"
        script.write_text(self.rewrite(command) + "\n")
        headers = self.harness / f"headers-{self.count}"
        inherited = " ".join([*self.env, "EXAMPLE_HEADERS"])
        done = subprocess.run(["bash", "-c", RUN, "run", str(self.state), str(script)], cwd=self.folder,
                              env={**self.env, "EXAMPLE_HEADERS": str(headers), "__INHERITED": inherited},
                              capture_output=True, text=True, timeout=180)
        answer = Answer(done.returncode, done.stdout, done.stderr)
        args = headers.with_name(headers.name + ".args")
        if args.exists():
            answer.args = args.read_text().splitlines()
        if headers.exists():
            blocks = [b for b in re.split(r"\r?\n\r?\n", headers.read_text(errors="replace")) if b.startswith("HTTP/")]
            if blocks:
                head = blocks[-1].splitlines()
                answer.status = int(head[0].split()[1])
                answer.content_type = next((line.split(":", 1)[1].strip() for line in head[1:]
                                            if line.lower().startswith("content-type:")), "")
        return answer

    def python(self, code: str) -> Answer:
        self.count += 1
        script = self.harness / f"example-{self.count}.py"
        script.write_text(self.rewrite(code) + "\n")
        done = subprocess.run(["bash", "-c", 'source "$1"; exec .venv/bin/python "$2"', "run", str(self.state),
                               str(script)], cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=180)
        return Answer(done.returncode, done.stdout, done.stderr)


# --- what an answer must be ------------------------------------------------------------------------

def expected_answer(args: list[str]) -> tuple[int, str]:
    """HTTP status and content type the service gives for the request curl made."""
    url = next(a for a in args if a.startswith("http"))
    parts = urlsplit(url)
    path = parts.path
    method = args[args.index("-X") + 1] if "-X" in args else ("POST" if "-d" in args or "-F" in args else "GET")
    segments = [s for s in path.split("/") if s]
    if segments and segments[0] in ("async", "selftest", "bulk"):
        if method in ("POST", "DELETE"):
            return 303, ""
        if len(segments) <= 2 or segments[2] == "results" and len(segments) == 3:
            return 200, "text/xml"
        if segments[2] == "results":
            if segments[-1].endswith(".csv"):
                return 200, "text/csv"
            return 200, "application/fits" if segments[-1].endswith(".fits") else "text/plain"
        if segments[2] in ("results.zip", "results.tar"):
            return 200, "application/zip" if segments[2].endswith(".zip") else "application/x-tar"
        return 200, "text/plain"   # phase, executionduration, destruction, quote, owner
    if path == "/sync":
        asked = (parse_qs(parts.query).get("RESPONSEFORMAT") or ["fits"])[0]
        return 200, {"png": "image/png", "jpeg": "image/jpeg"}.get(asked, "application/fits")
    if path == "/links":
        return 200, "application/x-votable+xml;content=datalink"
    if path in ("/capabilities", "/availability"):
        return 200, "text/xml"
    if path in ("/whoami", "/usage", "/tokens", "/openapi.json", "/stats.json"):
        return 200, "application/json"
    if path == "/query":
        return 200, "application/x-votable+xml"
    if path.startswith("/coverage/"):
        return 200, "application/fits" if path.endswith(".fits") else "application/json"
    raise AssertionError(f"no expectation for {method} {path}: add one to this test")


def check_saved(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, f"{path.name} was not saved"
    suffix = path.name.lower().rsplit(".", 1)[-1]
    if suffix == "fits":
        with fits.open(path) as hdul:
            if "MOCVERS" in hdul[-1].header:  # a coverage map (MOC 2.0): its HEALPix cells
                assert hdul[-1].header["ORDERING"] == "NUNIQ" and len(hdul[-1].data), path.name
            else:
                assert any(h.data is not None and h.data.ndim == 2 and h.data.size for h in hdul), path.name
    elif suffix == "xml":   # an SIA answer: a VOTable with its rows, QUERY_STATUS OK
        doc = etree.parse(str(path)).getroot()
        ns = {"v": doc.nsmap[None]}
        status = doc.find(".//v:RESOURCE[@type='results']/v:INFO[@name='QUERY_STATUS']", ns)
        assert status is not None and status.get("value") == "OK", path.name
        assert doc.findall(".//v:TABLEDATA/v:TR", ns), f"{path.name}: no rows"
    elif suffix == "zip":   # all of a job's results
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None and archive.namelist(), path.name
    elif suffix == "tar":
        with tarfile.open(path) as archive:
            assert all(m.isfile() and m.size for m in archive.getmembers()) and archive.getnames(), path.name
    elif suffix == "toml":   # a site file an example writes
        tomllib.loads(path.read_text(encoding="utf-8"))
    elif suffix in ("png", "jpg", "jpeg"):
        with Image.open(path) as image:
            image.load()
            assert image.format == ("PNG" if suffix == "png" else "JPEG"), (path.name, image.format)
    else:
        raise AssertionError(f"{path.name}: no check for .{suffix} files; add one to this test")


def check_body(answer: Answer, content_type: str) -> None:
    if "-i" in answer.args or "-o" in answer.args:
        return
    if "xml" in content_type:
        etree.fromstring(answer.out.encode())
    elif "json" in content_type:
        json.loads(answer.out)


def entry(table: dict[str, object], text: str, used: set[str]) -> str | None:
    for key in table:
        if key in text:
            used.add(key)
            return key
    return None


# --- the test ------------------------------------------------------------------------------------------

def test_every_example_of_the_readme_and_docs_works_as_written(tmp_path: Path) -> None:
    found, prose = examples()
    assert sum(e.kind == "python" for e in found) >= 2 and sum(e.kind == "shell" for e in found) >= 30
    unknown = [f"line {b.line}" for b in prose if b.doc == "README.md"]
    assert not unknown, (f"README.md code blocks that are neither commands this test knows nor Python "
                         f"({unknown}): add their command to SHELL_COMMANDS, and to NOT_RUN if it cannot run here")
    folder = tmp_path / "work"
    reader = Reader(folder, tmp_path / "harness")
    used: set[str] = set()
    ran: list[str] = []
    try:
        for example in found:
            where = str(example)
            if example.kind == "python":
                before = {p: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}
                answer = reader.python(example.text)
                assert answer.rc == 0, f"{where}\n{answer.out}\n{answer.err}"
                saved = [p for p in folder.iterdir() if p.is_file() and before.get(p) != p.stat().st_mtime_ns]
                assert saved, f"{where}: saved nothing"
                for path in saved:
                    check_saved(path)
                ran.append(where)
                continue
            skipped = entry(NOT_RUN, example.text, used)
            if skipped is not None:
                done = subprocess.run(["bash", "-n", "-c", example.text], capture_output=True, text=True)
                assert done.returncode == 0, f"{where}: not valid bash: {done.stderr}"
                continue
            steps = [s.strip() for s in example.text.split("&&")]
            serve = SERVE.match(steps[-1])
            if serve is not None:
                assert set(steps[:-1]) <= INSTALL_STEPS, f"{where}: unexpected steps before serve"
                reader.serve(dict(a.split("=", 1) for a in serve[1].split()))
                ran.append(where)
                continue
            assert reader.server is not None, f"{where}: an example before the server is started"
            answer = reader.shell(example.text)
            detail = f"{where}\nexit {answer.rc}, HTTP {answer.status} {answer.content_type}\n" \
                     f"{answer.out[-2000:]}\n{answer.err[-2000:]}"
            error = entry(EXPECTED_ERRORS, example.text, used)
            if error is not None:
                rc, status, start = EXPECTED_ERRORS[error]
                assert (answer.rc, answer.status) == (rc, status), detail
                assert answer.out.startswith(start) and answer.content_type.startswith("text/plain"), detail
                ran.append(where)
                continue
            assert answer.rc == 0, detail
            if answer.args:   # it called curl
                status, content_type = expected_answer(answer.args)
                assert answer.status == status, detail
                assert answer.content_type.startswith(content_type), detail
                check_body(answer, content_type)
                if "-o" in answer.args:
                    target = answer.args[answer.args.index("-o") + 1]
                    if target != "/dev/null":
                        check_saved(folder / target)
            promise = entry(PROMISES, example.text, used)
            if promise is not None:
                assert PROMISES[promise](answer.out.strip()), f"not as the README says:\n{detail}"
            ran.append(where)
    finally:
        reader.stop()
    stale = (set(NOT_RUN) | set(EXPECTED_ERRORS) | set(PROMISES)) - used
    assert not stale, f"entries of this test that match no example any more: {stale}"
    assert len(ran) >= 30, ran


def test_the_finder_sees_fenced_and_indented_blocks_and_refuses_mixed_ones(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("Text\n\n    curl -fsS http://127.0.0.1:8000/availability\n    # a comment\n\n"
                   "    JOB=$(curl -s x) \\\n      && echo\n\nmore\n\n```python\nimport os\n```\n\n"
                   "    clients (pyvo, curl)\n       │\n    nginx  one location\n")
    blocks = list(code_blocks(doc, "doc.md"))
    assert [b.line for b in blocks] == [3, 12, 15]   # indented lines with blank lines between: one block
    [(first, curl), (line, joined)] = shell_commands(blocks[0])
    assert (first, curl) == (3, "curl -fsS http://127.0.0.1:8000/availability")
    assert line == 6 and joined.split() == ["JOB=$(curl", "-s", "x)", "&&", "echo"]
    assert command_word("JOB=$(curl -s x)") == "curl" and command_word("export TOKEN=$(.venv/bin/cutout t)") \
        == ".venv/bin/cutout" and command_word("CUTOUT_X=1 .venv/bin/cutout serve") == ".venv/bin/cutout"
    assert is_python(blocks[1]) and not is_python(blocks[0]) and not is_python(blocks[2])
    assert [command_word(c) in SHELL_COMMANDS for _, c in shell_commands(blocks[2])] == [False, False, False]
    mixed = tmp_path / "mixed.md"
    mixed.write_text("    curl -fsS http://127.0.0.1:8000/availability\n    then something else\n")
    with pytest.raises(AssertionError, match="mixes commands"):
        classify(next(code_blocks(mixed, "mixed.md")))
