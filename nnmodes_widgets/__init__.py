"""Live analyses of how a PyTorch network learns, streamed into JupyterLab widgets.

``%load_ext nnmodes_widgets`` registers the ``%nnmodes`` magic; ``Monitor`` attaches to a
training loop; ``monitor.dashboard()`` shows the live widgets.
"""

from importlib import import_module

from .runs.history import History
from .version import __version__

__all__ = ["analysis", "Monitor", "MonitorError", "History", "Dashboard",
           "open_run", "list_runs", "compare", "Run", "RunFileError",
           "load_ipython_extension", "unload_ipython_extension", "__version__",
           "ModeLinear", "to_mode_model"]

# Imported when first used: `import nnmodes_widgets` itself needs neither torch (about 4 s) nor
# the widget side (ipywidgets, bqplot), so that a process that only reads recorded histories
# (a server, a script) does without them. Name -> (module, attribute or None for the module).
_LAZY = {
    "analysis": (".analysis", None),
    "Monitor": (".live.monitor", "Monitor"),
    "MonitorError": (".live.monitor", "MonitorError"),
    "ModeLinear": (".mdl", "ModeLinear"),
    "to_mode_model": (".mdl", "to_mode_model"),
    "Dashboard": (".widgets.dashboard", "Dashboard"),
    "open_run": (".runs.run_reader", "open_run"),
    "list_runs": (".runs.run_reader", "list_runs"),
    "Run": (".runs.run_reader", "Run"),
    "RunFileError": (".runs.run_file", "RunFileError"),
    "compare": (".runs.run_reader", "compare"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'nnmodes_widgets' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = import_module(module, __name__)
    return value if attribute is None else getattr(value, attribute)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def load_ipython_extension(ipython):
    """``%load_ext nnmodes_widgets``: register the ``%nnmodes`` magic."""
    from .jupyter.magics import load

    load(ipython)


def unload_ipython_extension(ipython):
    """``%unload_ext nnmodes_widgets``: detach every monitor the magic created."""
    from .jupyter.magics import unload

    unload(ipython)
