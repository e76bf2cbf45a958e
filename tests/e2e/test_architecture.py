"""The architecture that docs/architecture.md states, checked against the code.

- The allowed-imports tables of the document are read from it and every ``.py`` file of
  each package is checked with ``ast``: module-level, function-level, TYPE_CHECKING and
  literal dynamic imports (``importlib.import_module("...")``) all count.
- The engine path is imported in a fresh interpreter where the web, database and queue
  libraries cannot be imported, and makes a real cutout there.
- README.md and docs/ point only inside the repository, and README.md links the document.

Each checker is a function of a root folder, so it is also run on a small tree with
deliberate violations: a checker that cannot fail checks nothing.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = Path("docs") / "architecture.md"

PACKAGE_TABLE = ("package", "may import")
SODA_TABLE = ("soda module", "may import")
ENGINE_TABLE = ("engine-path module", "may not import")
# Folders that may import anything of ours (docs/architecture.md says so).
UNCHECKED = {"tests"}
SODA_ROOT = "soda"  # the package root module: name and version; importable by every module


# --- the tables of the document ------------------------------------------------------

def read_table(text: str, header: tuple[str, str]) -> dict[str, set[str]]:
    """``| a | b |`` rows below the given header row: every backticked name of the first
    cell maps to the backticked names of the second ("(none)": nothing)."""
    lines = text.splitlines()
    head = f"| {header[0]} | {header[1]} |"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == head)
    except StopIteration:
        raise AssertionError(f"{ARCHITECTURE} has no table with the header {head!r}") from None
    rows: dict[str, set[str]] = {}
    for line in lines[start + 2:]:
        if not line.strip().startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 2, f"{ARCHITECTURE}: a row of {head!r} needs two cells: {line!r}"
        names = re.findall(r"`([^`]+)`", cells[0])
        targets = set(re.findall(r"`([^`]+)`", cells[1]))
        assert names, f"{ARCHITECTURE}: no `name` in the first cell of {line!r}"
        assert targets or cells[1] == "(none)", f"{ARCHITECTURE}: write (none) or `names`: {line!r}"
        for name in names:
            assert name not in rows, f"{ARCHITECTURE}: {name} has two rows in {head!r}"
            rows[name] = targets
    assert rows, f"{ARCHITECTURE}: the table {head!r} has no rows"
    return rows


def tables(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    text = (root / ARCHITECTURE).read_text(encoding="utf-8")
    return read_table(text, PACKAGE_TABLE), read_table(text, SODA_TABLE), read_table(text, ENGINE_TABLE)


# --- imports, as written -------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    path: Path     # relative to the root
    line: int
    module: str    # absolute dotted name; ``from a import b`` gives ``a.b``

    def where(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"


def _module_name(rel: Path) -> tuple[str, bool]:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _dynamic_name(node: ast.Call) -> str | None:
    """The literal name of ``importlib.import_module("x")`` or ``__import__("x")``."""
    func = node.func
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imports_in(root: Path, path: Path) -> Iterator[Import]:
    rel = path.relative_to(root)
    name, is_package = _module_name(rel)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):  # every scope: functions and ``if TYPE_CHECKING:`` too
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(rel, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, name, is_package)
            for alias in node.names:
                yield Import(rel, node.lineno, base if alias.name == "*" else f"{base}.{alias.name}")
        elif isinstance(node, ast.Call):
            dynamic = _dynamic_name(node)
            if dynamic:
                yield Import(rel, node.lineno, dynamic.partition(":")[0])


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _allows(allowed: set[str], module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def _names(allowed: set[str], nothing: str = "nothing of ours") -> str:
    return ", ".join(sorted(allowed)) or nothing


# --- the checks ----------------------------------------------------------------------

def top_level_folders(root: Path) -> set[str]:
    """Folders of the repository that hold Python code."""
    return {p.name for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and python_files(p)} - UNCHECKED


def soda_parts(root: Path) -> set[str]:
    soda = root / "soda"
    return ({p.name for p in soda.iterdir() if p.is_dir() and python_files(p)}
            | {p.stem for p in soda.glob("*.py") if p.name != "__init__.py"})


def coverage_problems(root: Path) -> list[str]:
    packages, parts, engine = tables(root)
    problems = []
    on_disk = top_level_folders(root)
    for name in sorted(on_disk - set(packages)):
        problems.append(f"{name}/ holds Python code but has no row in the package table")
    for name in sorted(set(packages) - on_disk):
        problems.append(f"the package table names {name}, which is not a folder with Python code")
    ours = set(packages) | UNCHECKED
    for name, allowed in sorted(packages.items()):
        for target in sorted(allowed):
            if target.split(".")[0] not in ours:
                problems.append(f"{name} may import {target}, which is not a package of ours")
    soda_on_disk = soda_parts(root)
    for name in sorted(soda_on_disk - set(parts)):
        problems.append(f"soda/{name} has no row in the soda module table")
    named = set(parts).union(*parts.values()) | set(engine)
    for name in sorted(named - soda_on_disk):
        problems.append(f"the soda tables name {name}, which is not in soda/")
    return problems


def package_violations(root: Path) -> list[str]:
    packages, _, _ = tables(root)
    ours = set(packages) | UNCHECKED
    found = []
    for package, allowed in sorted(packages.items()):
        for path in python_files(root / package):
            for imp in imports_in(root, path):
                top = imp.module.split(".")[0]
                if top in ours and top != package and not _allows(allowed, imp.module):
                    found.append(f"{imp.where()}: {package} imports {imp.module}; "
                                 f"{package} may import {_names(allowed)}")
    return found


def _soda_part(module: str, parts: set[str]) -> str | None:
    pieces = module.split(".")
    if pieces[0] != "soda":
        return None
    return pieces[1] if len(pieces) > 1 and pieces[1] in parts else SODA_ROOT


def soda_violations(root: Path) -> list[str]:
    _, arrows, _ = tables(root)
    parts = soda_parts(root)
    found = []
    for path in python_files(root / "soda"):
        rel = path.relative_to(root / "soda")
        own = SODA_ROOT if rel == Path("__init__.py") else rel.parts[0].removesuffix(".py")
        allowed = arrows.get(own, set())
        for imp in imports_in(root, path):
            target = _soda_part(imp.module, parts)
            if target is None or target == own:
                continue
            if own == SODA_ROOT:
                found.append(f"{imp.where()}: the soda package root imports {imp.module}; it imports nothing")
            elif target != SODA_ROOT and target not in allowed:
                found.append(f"{imp.where()}: soda/{own} imports {imp.module}; "
                             f"soda/{own} may import {_names(allowed, 'nothing else of soda')}")
    return found


def engine_violations(root: Path) -> list[str]:
    """Direct imports only; the subprocess test below covers what they import in turn."""
    _, _, engine = tables(root)
    found = []
    for part, forbidden in sorted(engine.items()):
        folder, module = root / "soda" / part, root / "soda" / f"{part}.py"
        for path in python_files(folder) if folder.is_dir() else [module]:
            for imp in imports_in(root, path):
                if imp.module.split(".")[0] in forbidden:
                    found.append(f"{imp.where()}: soda/{part} is on the engine path and imports {imp.module}")
    return found


MACHINE_PATHS = re.compile(r"(?<![\w.])(?:/(?:work|home|Users|root|mnt|tmp)/|~/|file:)")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?[^)]*\)")


def documents(root: Path) -> list[Path]:
    docs = root / "docs"
    return [root / "README.md"] + sorted(p for p in docs.rglob("*") if p.is_file())


def outside_pointers(root: Path) -> list[str]:
    """Places where README.md or docs/ point outside the repository."""
    found = []
    for path in documents(root):
        design_here = (root / "DESIGN.md").is_file() or (path.parent / "DESIGN.md").is_file()
        rel = path.relative_to(root).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            where = f"{rel}:{number}"
            if "../" in line or "..\\" in line:
                found.append(f"{where}: a path that climbs out (../): {line.strip()}")
            if "DESIGN.md" in line and not design_here:
                found.append(f"{where}: names DESIGN.md, which is not a file of the repository")
            if MACHINE_PATHS.search(line):
                found.append(f"{where}: a path of some machine: {line.strip()}")
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                    continue  # a URL (https:, mailto:) or an anchor of the same page
                file_part = target.split("#", 1)[0]
                resolved = (path.parent / file_part).resolve()
                if target.startswith("/") or not resolved.is_relative_to(root.resolve()):
                    found.append(f"{where}: the link {target} leaves the repository")
                elif not resolved.exists():
                    found.append(f"{where}: the link {target} points at nothing in the repository")
    return found


def links_architecture(root: Path) -> bool:
    readme = (root / "README.md").read_text(encoding="utf-8")
    return re.search(r"\]\(\s*(?:\./)?docs/architecture\.md(?:#[^)]*)?\s*\)", readme) is not None


# --- the tests of the repository -------------------------------------------------------

def _report(problems: list[str]) -> str:
    return "\n  " + "\n  ".join(problems) + f"\n(the rules: {ARCHITECTURE}; if an arrow must " \
        "change, change that document in the same commit and say why)"


def test_the_tables_cover_every_package_and_every_part_of_soda() -> None:
    problems = coverage_problems(ROOT)
    assert not problems, _report(problems)


def test_packages_import_only_what_the_architecture_allows() -> None:
    problems = package_violations(ROOT)
    assert not problems, _report(problems)


def test_soda_modules_import_only_what_the_architecture_allows() -> None:
    problems = soda_violations(ROOT)
    assert not problems, _report(problems)


def test_the_engine_path_imports_no_forbidden_library_directly() -> None:
    problems = engine_violations(ROOT)
    assert not problems, _report(problems)


def test_readme_and_docs_stay_inside_the_repository() -> None:
    problems = outside_pointers(ROOT)
    assert not problems, "\n  " + "\n  ".join(problems)


def test_readme_links_the_architecture_document() -> None:
    assert (ROOT / ARCHITECTURE).is_file()
    assert links_architecture(ROOT), f"README.md has no link to {ARCHITECTURE.as_posix()}"


# --- the engine path in an interpreter without the web, database and queue libraries ---

ENGINE_MODULES = ("soda.cutouts", "soda.plan", "soda.request.model", "soda.engine.cutout",
                  "soda.engine.footprint", "soda.output.fits", "soda.output.pictures", "soda.surveys")
TILE = "DES0139-4457"
AUTHORITY = "demo.cutout"

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = frozenset(sys.argv[1].split(","))
    ATTEMPTS = []

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                ATTEMPTS.append(name)
                raise ImportError(f"{name} may not be imported on the engine path")
            return None

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, f"already imported before the check: {loaded}"
    sys.meta_path.insert(0, Blocker())
""")

CUT = textwrap.dedent("""
    import io, json
    from pathlib import Path
    import numpy as np
    from astropy.io import fits

    import soda
    assert Path(soda.__file__).resolve().is_relative_to(Path(sys.argv[2])), soda.__file__
    for name in sys.argv[3].split(","):
        __import__(name)

    from conf import load_settings
    from soda.cutouts import Cutouts
    from soda.surveys import DESSurvey
    from soda.surveys.des import tile_centre
    from soda.surveys.registry import Datasets

    root, data, tile, authority = Path(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
    settings = load_settings(environ={"CUTOUT_DATA_DIR": data})
    from soda.index.scan import scan_file
    from soda.surveys.in_memory import InMemoryCatalogue
    catalogue = InMemoryCatalogue(image for path in sorted(root.glob("*.fits.fz"))
                                  for image in scan_file(path, "des", DESSurvey, {}))
    cutouts = Cutouts(Datasets({"des": DESSurvey(catalogue, authority=authority)}, authority), settings)
    limits = cutouts.limits("someone")
    ra, dec = tile_centre(tile)

    # FITS by dataset ID: every HDU, cut exactly where the source pixels are.
    request = cutouts.parse([("ID", f"ivo://{authority}/des?{tile}_r"), ("CIRCLE", f"{ra} {dec} 0.002")])
    targets = cutouts.plan(request)
    cutouts.check_sync(targets, request, limits)
    body = cutouts.make(targets, request, limits)
    source = targets[0].image.path
    with fits.open(io.BytesIO(body)) as cut, fits.open(source) as whole:
        names = [hdu.name for hdu in cut[1:]]
        sci = cut["SCI"]
        x0, y0 = -int(sci.header["LTV1"]), -int(sci.header["LTV2"])
        ny, nx = sci.data.shape
        same = bool(np.array_equal(sci.data, whole["SCI"].section[y0:y0 + ny, x0:x0 + nx]))
        full = (whole["SCI"].header["NAXIS2"], whole["SCI"].header["NAXIS1"])

    # PNG by position: the survey finds the tile, the picture goes through renderers.
    request = cutouts.parse([("POS", f"CIRCLE {ra} {dec} 0.002"), ("FILTER", "g"),
                             ("RESPONSEFORMAT", "png")])
    targets = cutouts.plan(request)
    png = cutouts.make(targets, request, limits)

    print(json.dumps({"hdus": names, "shape": [ny, nx], "full": list(full), "same": same,
                      "png": png[:8].hex(), "png_tile": targets[0].image.tile,
                      "attempts": ATTEMPTS}))
""")


def _engine_blocklist() -> list[str]:
    _, _, engine = tables(ROOT)
    forbidden = set().union(*engine.values())
    assert set(engine) >= {"request", "sky", "surveys", "plan", "engine", "output", "cutouts"}
    # The document may block more; these are the libraries the engine path must never need.
    assert forbidden >= {"starlette", "peewee", "playhouse", "dramatiq", "authlib", "redis",
                         "itsdangerous", "saml2", "httpx", "httpx2"}
    return sorted(forbidden)


def run_blocked(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + script, ",".join(_engine_blocklist()), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def tiny_survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from soda.surveys.demo import build_des_demo

    root = tmp_path_factory.mktemp("engine-path") / "des"
    build_des_demo(root, tiles=(TILE,), bands=("g", "r"), size=96, seed=5)
    return root


def test_the_engine_path_cuts_without_web_database_or_queue_libraries(
        tiny_survey: Path, tmp_path: Path) -> None:
    done = run_blocked(CUT, str(ROOT), ",".join(ENGINE_MODULES), str(tiny_survey),
                       str(tmp_path / "data"), TILE, AUTHORITY)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-4000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [], f"the engine path tried to import {result['attempts']}"
    assert result["hdus"] == ["SCI", "MSK", "WGT"]
    ny, nx = result["shape"]
    assert 10 < ny < result["full"][0] and 10 < nx < result["full"][1]  # a cut, not the whole tile
    assert result["same"], "the cut SCI pixels differ from the source pixels they claim to be"
    assert result["png"] == b"\x89PNG\r\n\x1a\n".hex()
    assert result["png_tile"] == TILE


def test_the_blocker_refuses_what_the_web_layer_imports() -> None:
    """The check above proves something only if the blocker really blocks."""
    done = run_blocked("import soda.web.sync\n")
    assert done.returncode != 0
    assert "may not be imported on the engine path" in done.stderr


# --- the checkers, on a tree that breaks every rule -----------------------------------

BAD_DOC = """\
# Architecture

| package | may import |
| --- | --- |
| `dali` | (none) |
| `storage` | (none) |
| `uws` | `dali`, `storage.protocol` |
| `soda` | `dali`, `uws`, `storage` |

| soda module | may import |
| --- | --- |
| `sky` | (none) |
| `plan` | `sky` |
| `web` | `plan` |

| engine-path module | may not import |
| --- | --- |
| `sky`, `plan` | `starlette`, `uws` |
"""

BAD_FILES = {
    "dali/__init__.py": "",
    "dali/errors.py": "import os\n\n\ndef late():\n    from soda.plan import plan\n",
    "storage/__init__.py": "",
    "storage/protocol.py": "",
    "storage/local.py": "",
    "uws/__init__.py": "from dali import errors\nfrom storage.protocol import ResultStore\n",
    "uws/service.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from storage.local import LocalStore\n",
    "uws/routes.py": "import storage\n",
    "soda/__init__.py": "VERSION = '1'\nfrom soda.plan import plan\n",
    "soda/sky/__init__.py": "",
    "soda/sky/regions.py": "from soda import VERSION\nimport starlette.requests\n",
    "soda/plan.py": "from . import web\nfrom soda.sky.regions import Circle\nimport importlib\n"
                    "importlib.import_module('uws.service')\n",
    "soda/web/__init__.py": "from soda.plan import plan\nfrom soda.sky import regions\n",
    "soda/extra.py": "",
    "renderers/__init__.py": "",
}

BAD_README = """\
# cutout

See [the design](../shared/DESIGN.md) and /home/someone/notes.md, or
[nothing](docs/missing.md) and [a root](/etc/passwd); [fine](https://www.ivoa.net/) [also](#cutouts).
"""


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / ARCHITECTURE).write_text(BAD_DOC)
    (tmp_path / "README.md").write_text(BAD_README)
    for name, text in BAD_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_import_checkers_report_every_violation_with_its_place(bad_tree: Path) -> None:
    assert package_violations(bad_tree) == [
        "dali/errors.py:5: dali imports soda.plan.plan; dali may import nothing of ours",
        "uws/routes.py:1: uws imports storage; uws may import dali, storage.protocol",
        "uws/service.py:3: uws imports storage.local.LocalStore; uws may import dali, storage.protocol",
    ]
    assert soda_violations(bad_tree) == [
        "soda/__init__.py:2: the soda package root imports soda.plan.plan; it imports nothing",
        "soda/plan.py:1: soda/plan imports soda.web; soda/plan may import sky",
        "soda/web/__init__.py:2: soda/web imports soda.sky.regions; soda/web may import plan",
    ]
    assert engine_violations(bad_tree) == [
        "soda/plan.py:4: soda/plan is on the engine path and imports uws.service",
        "soda/sky/regions.py:2: soda/sky is on the engine path and imports starlette.requests",
    ]
    assert coverage_problems(bad_tree) == [
        "renderers/ holds Python code but has no row in the package table",
        "soda/extra has no row in the soda module table",
    ]


def test_the_document_checkers_find_every_pointer_outside(bad_tree: Path) -> None:
    found = outside_pointers(bad_tree)
    assert [f.split(": ", 1)[0] for f in found] == ["README.md:3"] * 4 + ["README.md:4"] * 2
    assert any("../" in f for f in found) and any("DESIGN.md" in f for f in found)
    assert any("machine" in f for f in found)
    assert any("docs/missing.md points at nothing" in f for f in found)
    assert any("/etc/passwd leaves the repository" in f for f in found)
    assert not links_architecture(bad_tree)
    (bad_tree / "README.md").write_text("Read [the architecture](docs/architecture.md#layers).\n")
    assert outside_pointers(bad_tree) == [] and links_architecture(bad_tree)
