"""Published reference data shipped with the package (in the wheel), read by the tests and the
notebooks: a clone or an installed package needs nothing beside it.

``weightscale/``: the relative-weight-change series and layer partitions published with the
WeightScale study (arXiv 2107.07005; repository ManifoldRG/Relative-Weight-Change, folder
``clustering/``); its README.md says what each field holds.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTSCALE = Path(__file__).resolve().parent / "weightscale"


def weightscale_runs() -> dict[str, dict]:
    """The WeightScale reference runs, file stem -> the run's JSON (``series``, ``rwc_kind``,
    ``published_clusters`` where the authors reported one, ...), in file-name order."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(WEIGHTSCALE.glob("*.json"))}
