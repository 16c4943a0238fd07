"""The architectures notebook in JupyterLab, as shipped: where its two dashboards' status lines
end.

notebooks/architectures.ipynb trains a ResNet on digits and a character-level GPT, each for
about 10 s with its live dashboard (`%nnmodes watch ... --every 10`, the default budget). Each
run is a Run All in a fresh kernel, the dashboard in training kept in view, as in
bench/lab_quickstart.py. Runs this short are all first minute (SPEC 5: the budget holds over any
minute, the first included), so what a dashboard costs as it starts (its first frames, the first
analyses' runs) counts in full.

    .venv/bin/python bench/run.py lab_architectures
"""

from __future__ import annotations

import statistics

from frontend import _version
from lab_quickstart import lab_runs

MODELS = ("ResNet", "GPT")     # the notebook's dashboards, in order


def run() -> dict:
    runs = lab_runs("architectures.ipynb")
    assert all(len(dashboards) == len(MODELS) for dashboards in runs), \
        f"expected the {' and '.join(MODELS)} dashboards, got {[len(d) for d in runs]}"
    return {"runs": runs, "jupyterlab": _version("jupyterlab")}


def section(f: dict) -> list[str]:
    runs = f["runs"]
    budget = runs[0][0]["budget"]

    def path(readings):
        shown = readings[::max(1, len(readings) // 6)]
        return ", ".join(f"{s:.1f}% at {t:.0f} s" for t, s in shown)

    rows, targets = [], []
    for i, model in enumerate(MODELS):
        ends = [r[i]["slowdown"] for r in runs]
        within = all(r[i]["slowdown"] <= r[i]["budget"] for r in runs)
        rows += [f"| {k + 1} | {model} | {r[i]['status']} | {r[i]['slowdown']:.1f}% | "
                 f"{path(r[i]['readings'])} |" for k, r in enumerate(runs)]
        targets.append(f"| the {model}'s status slowdown ends within the budget ({budget:g}%) in "
                       f"every run | {', '.join(f'{e:.1f}%' for e in ends)} (median "
                       f"{statistics.median(ends):.1f}%) | {'met' if within else '**not met**'} |")
    return [
        "## The architectures notebook in JupyterLab: where its status lines end",
        "",
        f"`notebooks/architectures.ipynb` as shipped, run {len(runs)} times in JupyterLab "
        f"{f['jupyterlab']} (headless Chromium, the browser tests' flags, 1400 x 1000), each in a "
        "fresh kernel: Run All, the dashboard in training kept in view. Its ResNet and its GPT "
        "train about 10 s each: their whole run is their first minute. The slowdown is each "
        "dashboard's status line (the monitor's own figure, over the last minute of training) "
        "from the detach's frame; readings while it trained beside it.",
        "",
        "| run | model | status line at the end | slowdown | readings while it trained |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        *targets,
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section(run())))
