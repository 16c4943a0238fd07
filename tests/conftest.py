"""Shared test settings."""

import os
from pathlib import Path

import pytest
import torch


BROWSER = Path(__file__).parent / "browser"


def pytest_collection_modifyitems(items):
    # The browser tests train for seconds of wall time and check what the monitor made of them
    # (panels that moved, a slowdown within the budget): a second test beside them on the 2-core
    # machines would change that, so they run alone (marker ``alone``, as the notebooks that
    # watch a training); scripts/test runs the rest side by side.
    for item in items:
        if BROWSER in item.path.parents:
            item.add_marker(pytest.mark.alone)


@pytest.fixture(autouse=True, scope="session")
def runs_in_a_scratch_folder(tmp_path_factory):
    """Monitors record their runs under the working directory (nnmodes_runs/) by default: the
    tests run in a scratch folder, so that the checkout gets none of them."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(here)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' tensors are tiny: a second intra-op thread only spins against the first (and
    against JupyterLab and kernels in the browser tests) on the 2-core test machines, making
    small-tensor tests many times slower. Nothing here measures speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_disk(monkeypatch):
    """Run files on a disk that is full a few pages after their start: SQLite's own "database or
    disk is full" (SQLITE_FULL) from the writer's connection."""
    from nnmodes_widgets.runs import run_writer

    connect = run_writer._writer_connection

    def full_soon(path):
        db = connect(path)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 3}")
        return db

    monkeypatch.setattr(run_writer, "_writer_connection", full_soon)
