"""The run listing (SPEC 12, 14): what one listing of the Runs panel costs the server.

Two roots, listed through ``list_under_root`` (what ``GET /nnmodes/runs`` answers):

- 2,000 finished runs (copies of one run of 20 RWC samples, 100 to a folder);
- 100,000 files that are not runs (small ``.png`` files, one folder) beside 10 runs.

Measured in one process, the OS's file cache warm (the files were just written): the first
listing (the listing's cache empty: every run file's header read, then the file opened read-only
by SQLite) and a cached listing (the Runs panel refreshes every 3 s: unchanged files are not
opened again), medians of repeats, with the run files read per listing. Beside them, for the
100,000 files, what listing them cost before the listing recognised run files by name: opening
every file to read its header (emulated: ``open`` and 72 bytes read per file).

    .venv/bin/python bench/listing.py        (or: bench/run.py listing --write)
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from nnmodes_widgets.jupyter.server_extension import list_under_root
from nnmodes_widgets.runs import run_listing
from nnmodes_widgets.runs.run_writer import RunWriter

RUNS = 2000
PER_FOLDER = 100
OTHER_FILES = 100_000
REPEATS = 5


def _run_file(path: Path) -> Path:
    with RunWriter(path, {"model": "MLP"}) as writer:
        for step in range(20):
            writer.record("rwc", step, float(step), {f"l{j}.weight": float(step * j) for j in range(8)})
    return path


def _timed_listings(root: Path) -> dict:
    """Median seconds of the first (cache emptied) and of a cached listing, and the run files
    read by each."""
    reads = []
    peek = run_listing.peek

    def counting(*args, **kwargs):
        reads.append(1)
        return peek(*args, **kwargs)

    run_listing.peek = counting
    try:
        first, cached, counts = [], [], {}
        for _ in range(REPEATS):
            run_listing._cache.clear()
            del reads[:]
            start = time.perf_counter()
            listing = list_under_root(root)
            first.append(time.perf_counter() - start)
            counts["first"] = len(reads)
            del reads[:]
            start = time.perf_counter()
            list_under_root(root)
            cached.append(time.perf_counter() - start)
            counts["cached"] = len(reads)
    finally:
        run_listing.peek = peek
    return {"first": statistics.median(first), "cached": statistics.median(cached),
            "runs": len(listing["runs"]), "truncated": listing["truncated"],
            "read_first": counts["first"], "read_cached": counts["cached"]}


def _headers_of_every_file(folder: Path) -> float:
    """Seconds to open every regular file in ``folder`` and read its first 72 bytes (how the
    listing recognised run files before it went by their names first)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for entry in os.scandir(folder):
            if entry.is_file():
                with open(entry.path, "rb") as f:
                    f.read(72)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = _run_file(tmp / "one.nnmodes")
        runs_root = tmp / "runs"
        for i in range(RUNS):
            folder = runs_root / f"folder{i // PER_FOLDER:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(one, folder / f"run{i:04d}.nnmodes")
        other_root = tmp / "images"
        pictures = other_root / "pictures"
        pictures.mkdir(parents=True)
        payload = b"\x89PNG\r\n\x1a\n" + bytes(120)
        for i in range(OTHER_FILES):
            (pictures / f"{i:06d}.png").write_bytes(payload)
        for i in range(10):
            shutil.copyfile(one, other_root / f"run{i}.nnmodes")
        return {"runs": _timed_listings(runs_root), "others": _timed_listings(other_root),
                "headers": _headers_of_every_file(pictures), "run_bytes": one.stat().st_size}


def section(f: dict) -> list[str]:
    ms = 1e3
    r, o = f["runs"], f["others"]
    return [
        "## Run listing (`GET /nnmodes/runs`, the Runs panel's refresh)",
        "",
        f"`list_under_root` on two roots: {RUNS:,} finished runs ({f['run_bytes']:,} B each, "
        f"{PER_FOLDER} to a folder), and {OTHER_FILES:,} `.png` files in one folder beside 10 runs. "
        "First listing: the listing's cache empty, each run file's header read and the file opened "
        "read-only by SQLite (no side files); cached: the Runs panel's refresh every 3 s, unchanged "
        f"files not opened again. Medians of {REPEATS}; the OS's file cache warm.",
        "",
        "| root | runs listed | first listing | cached listing | run files read (first / cached) |",
        "| --- | --- | --- | --- | --- |",
        f"| {RUNS:,} runs | {r['runs']:,} | {r['first'] * ms:.0f} ms | {r['cached'] * ms:.0f} ms "
        f"| {r['read_first']:,} / {r['read_cached']:,} |",
        f"| {OTHER_FILES:,} other files + 10 runs | {o['runs']:,} | {o['first'] * ms:.0f} ms | "
        f"{o['cached'] * ms:.0f} ms | {o['read_first']:,} / {o['read_cached']:,} |",
        "",
        f"The {OTHER_FILES:,} other files are never opened (a file is a candidate by its name); "
        f"opening each to read its header, as the listing did before, takes "
        f"{f['headers'] * ms:.0f} ms a listing ({f['headers'] / o['cached']:.0f}x the cached "
        "listing of that root).",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section(run())))
