"""Live analyses of how a PyTorch network learns, streamed into JupyterLab widgets.

``%load_ext nnmodes_widgets`` registers the ``%nnmodes`` magic; ``Monitor`` attaches to a
training loop; ``monitor.dashboard()`` shows the live widgets.
"""

from importlib.metadata import PackageNotFoundError, version

from . import analysis
from .history import History
from .mdl import ModeLinear, to_mode_model
from .monitor import Monitor, MonitorError

try:
    __version__ = version("nnmodes_widgets")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["analysis", "Monitor", "MonitorError", "History", "Dashboard",
           "load_ipython_extension", "unload_ipython_extension", "__version__",
           "ModeLinear", "to_mode_model"]


def __getattr__(name):
    # The widget side imports ipywidgets/bqplot: load it only when asked for, so that the
    # analyses and the monitor work in a plain script without Jupyter installed.
    if name == "Dashboard":
        from .widgets.dashboard import Dashboard

        return Dashboard
    raise AttributeError(f"module 'nnmodes_widgets' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """``%load_ext nnmodes_widgets``: register the ``%nnmodes`` magic."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython):
    """``%unload_ext nnmodes_widgets``: detach every monitor the magic created."""
    from .magics import unload

    unload(ipython)
