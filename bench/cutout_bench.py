"""Cutting against whole-tile decompression and astrocut: now the engine section of
bench/run.py, which this runs (same --workdir and --repeat options; more with --help).

    .venv/bin/python bench/cutout_bench.py [--workdir DIR] [--repeat N]
"""

from __future__ import annotations

import sys

from run import main  # bench/run.py (the script's folder is on sys.path)

if __name__ == "__main__":
    sys.exit(main(["--only", "engine", *sys.argv[1:]]))
