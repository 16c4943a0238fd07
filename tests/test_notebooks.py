"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, as a user would run it."""

import functools
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# What a notebook that watches a training records depends on the wall clock (the chosen
# every, the runs the budget allows), so it runs alone (scripts/test). These check only what
# was computed (a fixed number of steps, what the final round records) and run beside others.
BESIDE = {"mode_decomposition.ipynb", "weightscale_reproduction.ipynb", "learning_modes.ipynb",
          "trainers.ipynb"}
ALONE = pytest.mark.alone


@functools.cache
def _workdir() -> Path:
    """A copy of notebooks/ to run in, so that files the notebooks write (exports) stay out of
    the repository; nothing beside it (the reference data come with the package)."""
    root = Path(tempfile.mkdtemp(prefix="nnmodes-notebooks-"))
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root / "notebooks"


@functools.cache   # each notebook runs once per session; several tests read its outputs
def execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(_workdir())}}).execute()
    return nb


def outputs(nb, kind=None):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind is None or out.output_type == kind:
                yield out


def test_there_are_notebooks():
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", [pytest.param(p, marks=[] if p.name in BESIDE else [ALONE])
                                  for p in NOTEBOOKS], ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", \
        "JupyterLab asks for a kernel when the kernelspec is missing"
    executed = execute(path)   # raises CellExecutionError on any failing cell
    assert not list(outputs(executed, "error"))


@ALONE
def test_quickstart_trains_and_shows_the_dashboard():
    nb = execute(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("quickstart.ipynb")])
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    views = [o for o in outputs(nb, "display_data") if WIDGET_VIEW in o.data]
    assert len(views) == 1, "the dashboard is displayed once"
    accuracy = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if "test accuracy" in line]
    assert accuracy and accuracy[-1] > 0.9, text
    assert "0 errors" in text and "detached from Sequential" in text, text
    assert "warning" not in text, text      # a healthy run: %nnmodes status lists no warning finding
    # the run read back from disk holds every sample the monitor took (every chosen: a count
    # that depends on the machine)
    stored = re.search(r"finished · (\d+) RWC samples · Sequential", text)
    assert stored and int(stored.group(1)) > 100, text
    assert {int(n) for n in re.findall(r"\d\.weight\s+(\d+) samples;", text)} == \
        {int(stored.group(1))}, text
    for layer in ("1.weight", "3.weight", "5.weight"):
        assert f"{layer}" in text
    exported = _workdir() / "quickstart_rwc.png"
    assert exported.read_bytes().startswith(b"\x89PNG"), "the export cell wrote a PNG"
    shown = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert shown, "the export cell shows the exported figure"


@ALONE
def test_grokking_generalises_late_and_the_monitor_looks_for_phase_changes():
    import re

    nb = execute(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("grokking.ipynb")])
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    views = [o for o in outputs(nb, "display_data") if WIDGET_VIEW in o.data]
    assert len(views) == 1, "the dashboard is displayed once"
    fitted, low, high = map(int, re.search(
        r"training accuracy reached 100% at step (\d+); test accuracy rose from 10% to 90% "
        r"between steps (\d+) and (\d+)", text).groups())
    assert fitted < low < high, text              # fits first, generalises much later: grokking
    assert float(re.findall(r"test accuracy (\d\.\d+)", text)[-1]) > 0.9, text
    # the phases were found over the whole run at detach (the cell reads their record); whether
    # PELT finds a change in the ~20 samples of each series a one-minute run gives varies from
    # run to run (the sampled steps differ): the notebook says which, and where
    phases = re.search(r"phase changes detected at steps \[([\d, ]*)\]", text).group(1)
    found = [int(s) for s in phases.split(",") if s.strip()]
    assert all(0 < s <= 6000 for s in found), text
    assert "consistent with the test-accuracy jump" in text or "no phase change was detected" in text
    assert (_workdir() / "grokking_dashboard.png").read_bytes().startswith(b"\x89PNG")


@ALONE
def test_the_architectures_notebooks_resnet_and_gpt_train_with_no_warning():
    # healthy runs of the architectures people train: %nnmodes status lists findings, and
    # none is a warning (SPEC 15)
    nb = execute(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("architectures.ipynb")])
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert text.count("0 errors") >= 2, text       # both status lines were printed
    assert "warning" not in text, text


def test_trainers_notebook_watches_lightning_and_the_hugging_face_trainer():
    import re

    nb = execute(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("trainers.ipynb")])
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    views = [o for o in outputs(nb) if WIDGET_VIEW in o.get("data", {})]
    shown = [o for o in views if o.output_type == "display_data"]     # show=True, at fit
    taken = [o for o in views if o.output_type == "execute_result"]   # callback.dashboard()
    assert len(shown) == 1 and len(taken) == 1, views
    batches, steps, global_step = map(int, re.search(
        r"lightning: test accuracy \S+; (\d+) batches, (\d+) optimizer steps "
        r"\(trainer.global_step (\d+)\)", text).groups())
    assert steps == global_step and batches // 2 <= steps < batches, text   # accumulated by 2
    assert float(re.search(r"lightning: test accuracy (\S+);", text).group(1)) > 0.9, text
    steps, global_step = map(int, re.search(
        r"transformers: loss \S+; (\d+) optimizer steps \(state.global_step (\d+)\)", text).groups())
    assert steps == global_step > 0, text
    assert "finished · digits-mlp-version_0 · " in text and "finished · sonnets-gpt2 · " in text, text
    assert "layers: ['net.1.weight', 'net.3.weight', 'net.5.weight']" in text, text
    assert "tied head listed once: True" in text, text


@ALONE
def test_findings_tour_provokes_each_finding_and_the_healthy_run_stays_quiet():
    nb = execute(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("findings.ipynb")])
    runs = [c for c in nb.cells if c.cell_type == "code" and "watch_and_train(model" in c.source
            and "def watch_and_train" not in c.source]
    assert len(runs) == 4, "healthy, dying ReLUs, frozen layer, edge of stability"
    said = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in runs]
    for cell, text in zip(runs, said):
        assert [o for o in cell.outputs if WIDGET_VIEW in o.get("data", {})], "a live dashboard"
        assert "accuracy" in text, text
    healthy, dying, frozen, edge = said
    assert "warning" not in healthy, healthy
    assert "warning layer 0: " in dying and "% of units dead since step" in dying, dying
    assert "warning 2.weight: weights have not changed since step" in frozen, frozen
    assert "SGD at the edge of stability" in edge and "warning" not in edge, edge
    stored = "".join(o.get("data", {}).get("text/plain", "") for o in nb.cells[-1].outputs)
    assert "('dead_units', '0'," in stored, stored     # the run on disk has the same finding
