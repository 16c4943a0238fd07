"""Live widgets: one module per widget, and the dashboard that composes them."""

from .basins import Basins
from .dashboard import Dashboard
from .neurons import Neurons
from .radiograph import LiveCharacteristicMaps, LiveRadiograph, Radiograph
from .spectrum import Spectra
from .status import StatusLine
from .trend import Trend

__all__ = ["Basins", "Dashboard", "LiveCharacteristicMaps", "LiveRadiograph", "Neurons", "Radiograph",
           "Spectra", "StatusLine", "Trend"]
