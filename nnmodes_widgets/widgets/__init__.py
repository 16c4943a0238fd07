"""Live widgets: one module per widget, and the dashboard that composes them."""

from .dashboard import Dashboard
from .status import StatusLine
from .trend import Trend

__all__ = ["Dashboard", "StatusLine", "Trend"]
