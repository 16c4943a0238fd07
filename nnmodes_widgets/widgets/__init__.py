"""Live widgets: one module per widget, and the dashboard that composes them."""

from .dashboard import Dashboard
from .radiograph import LiveRadiograph, Radiograph
from .spectrum import Spectra
from .status import StatusLine
from .trend import Trend

__all__ = ["Dashboard", "LiveRadiograph", "Radiograph", "Spectra", "StatusLine", "Trend"]
