"""The installed package's version (recorded with every run)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nnmodes_widgets")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
