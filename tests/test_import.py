"""`import nnmodes_widgets` needs neither torch nor the widget side: a process that only reads
recorded histories (a server, a script) does without them; the public names load when used."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    # a fresh interpreter: this test process has torch imported already
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_package_and_its_history_import_without_torch_or_widgets():
    out = _run("import sys, nnmodes_widgets as nm\n"
               "from nnmodes_widgets.runs.history import History\n"
               "from nnmodes_widgets.runs.run_view import RunView, ProbeFacts, check_view\n"
               "from nnmodes_widgets.runs.run_state import RunState, MonitorError\n"
               "h = nm.History(); h.record('rwc', 1, 0.0, {'a': 1.0})\n"
               "print(sorted(m for m in ('torch', 'ipywidgets', 'bqplot', 'anywidget')"
               " if m in sys.modules), h.layers('rwc'))")
    assert out == "[] ['a']"


def test_the_public_names_load_when_used():
    out = _run("import nnmodes_widgets as nm\n"
               "from nnmodes_widgets import Monitor, MonitorError, to_mode_model\n"
               "print(nm.Monitor is Monitor, nm.analysis.mode_spectrum.__name__,"
               " nm.ModeLinear.__name__, nm.Dashboard.__name__, 'Monitor' in dir(nm))")
    assert out == "True mode_spectrum ModeLinear Dashboard True"
    done = subprocess.run([sys.executable, "-c", "import nnmodes_widgets as nm; nm.Nothing"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0 and "has no attribute 'Nothing'" in done.stderr


def test_the_training_frameworks_load_only_with_their_integration():
    out = _run("import sys, nnmodes_widgets as nm, nnmodes_widgets.integrations\n"
               "nm.Monitor, nm.Dashboard\n"
               "print(sorted(m for m in ('lightning', 'pytorch_lightning', 'transformers', 'accelerate')"
               " if m in sys.modules))")
    assert out == "[]"
