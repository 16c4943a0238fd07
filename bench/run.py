"""Run every benchmark and write BENCHMARKS.md (the machine, versions, command and figures).

    .venv/bin/python bench/run.py
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import overhead  # noqa: E402

import nnmodes_widgets as nm  # noqa: E402


def main() -> None:
    o = overhead.run()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `.venv/bin/python bench/run.py` on {date.today()}: {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), nnmodes_widgets {nm.__version__}. Each ratio compares "
        "variants measured interleaved in one process (medians of the repeats).",
        "",
        "## Training overhead (quickstart MLP, default settings, CPU)",
        "",
        f"64-512-256-10 MLP on digits, batch 16, {o['steps']} optimizer steps, {o['repeats']} repeats; "
        f"bare training takes {o['bare_ms_per_step']:.3f} ms per step.",
        "",
        "| variant | wall time / bare | target |",
        "| --- | --- | --- |",
        f"| Monitor, RWC only (every=10) | {o['rwc_ratio']:.3f} | <= 1.05 |",
        f"| Monitor, default analyses (every=10, budget=0.05) | {o['monitor_ratio']:.3f} | <= 1.05 |",
        f"| Monitor + Dashboard (kernel side) | {o['dashboard_ratio']:.3f} | <= 1.05 |",
        "",
        f"The monitor's own estimate of its share of wall time (status line): "
        f"{100 * o['reported_overhead']:.1f}%.",
        "",
    ]
    out = Path(__file__).parent.parent / "BENCHMARKS.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
