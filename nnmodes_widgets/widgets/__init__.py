"""Live widgets: one module per widget, and the dashboard that composes them."""

from .dashboard import Dashboard
from .radiograph import Radiograph
from .status import StatusLine
from .trend import Trend

__all__ = ["Dashboard", "Radiograph", "StatusLine", "Trend"]
