"""Run every benchmark and write BENCHMARKS.md (the machine, versions, command and figures).

    .venv/bin/python bench/run.py [NAME ...] [--write]

Each module in MODULES has ``run() -> dict`` (its figures, measured side by side in one process)
and ``section(figures) -> list[str]`` (its part of BENCHMARKS.md). With names, only those run and
are printed (for working on one benchmark); with ``--write`` too, their sections replace the
ones of the same title in BENCHMARKS.md (or are added), and the file's first paragraph says
which sections were rewritten when.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import nnmodes_widgets as nm  # noqa: E402

MODULES = ["live", "lab_quickstart", "lab_architectures", "overhead", "kernels", "alternatives", "frontend", "radiographs", "store", "basins",
           "listing"]


def main(names: list[str], write: bool = False) -> None:
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, Python "
               f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} "
               f"threads), nnmodes_widgets {nm.__version__}")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `.venv/bin/python bench/run.py` on {date.today()}: {machine}. Each ratio "
        "compares variants measured interleaved in one process (medians of the repeats).",
        "",
    ]
    sections = []
    for name in names or MODULES:
        module = importlib.import_module(name)
        sections.append(module.section(module.run()))
    print("\n".join(lines + [line for section in sections for line in section]))
    path = Path(__file__).parent.parent / "BENCHMARKS.md"
    if not names:
        path.write_text("\n".join(lines + [line for section in sections for line in section]))
    elif write:
        path.write_text(_spliced(path.read_text(), sections,
                                 f"Sections {', '.join(names)} rewritten by `bench/run.py "
                                 f"{' '.join(names)} --write` on {date.today()} ({machine})."))


def _spliced(text: str, sections: list[list[str]], stamp: str) -> str:
    """``text`` (BENCHMARKS.md) with each "## " section of ``sections`` (a module may write
    several) replacing the one under the same title, or appended; ``stamp`` added to the first
    paragraph."""
    def split(body: str) -> dict[str, str]:
        parts = body.split("\n## ")
        return {p.split("\n", 1)[0]: "## " + p.rstrip("\n") + "\n" for p in parts[1:]}

    head, _, rest = text.partition("\n## ")
    body = split("\n## " + rest)
    body.update(split("\n" + "\n".join(line for section in sections for line in section)))
    return "\n".join([_unstamped(head.rstrip("\n"), stamp) + " " + stamp + "\n", *body.values()])


_STAMP = re.compile(r" Sections (?P<names>[\w, ]+) rewritten by `[^`]*` on .*?\)\.")


def _unstamped(head: str, stamp: str) -> str:
    """``head`` without the earlier stamps whose sections ``stamp`` rewrites again."""
    names = set(_STAMP.match(" " + stamp)["names"].split(", "))
    return _STAMP.sub(lambda m: "" if set(m["names"].split(", ")) <= names else m[0], head)


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--write"], write="--write" in args)
