"""Run every benchmark and write BENCHMARKS.md (the machine, versions, command and figures).

    .venv/bin/python bench/run.py [NAME ...]

Each module in MODULES has ``run() -> dict`` (its figures, measured side by side in one process)
and ``section(figures) -> list[str]`` (its part of BENCHMARKS.md). With names, only those run and
the file is not rewritten (for working on one benchmark).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import nnmodes_widgets as nm  # noqa: E402

MODULES = ["live", "overhead", "kernels", "alternatives", "frontend", "radiographs"]


def main(names: list[str]) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `.venv/bin/python bench/run.py` on {date.today()}: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), nnmodes_widgets {nm.__version__}. Each ratio compares "
        "variants measured interleaved in one process (medians of the repeats).",
        "",
    ]
    for name in names or MODULES:
        module = importlib.import_module(name)
        lines += module.section(module.run())
    print("\n".join(lines))
    if not names:
        (Path(__file__).parent.parent / "BENCHMARKS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
