"""What each optimiser gets in a comparison: the same number of learning rates on a log grid.

The ranges are the default search space's, one per optimiser family, because
sensible rates differ by orders of magnitude between families (plain SGD wants
~0.1, Adam ~1e-3). Giving every optimiser the same number of points over its
own range is DeepOBS's protocol: the same tuning budget for each.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..errors import check_number, invalid_value
from ..optim import OPTIMIZERS, check_installed
from ..tuning.defaults import LR_RANGES, OTHER_LR_RANGES

__all__ = ["DEFAULT_OPTIMIZERS", "DEFAULT_POINTS", "LR_GRID_RANGES", "parse_optimizers", "lr_grid"]

DEFAULT_OPTIMIZERS = ("gd", "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")
DEFAULT_POINTS = 8
# gd takes the same steps as sgd, only full batch; L-BFGS's line search makes 1 the natural scale.
LR_GRID_RANGES = {**LR_RANGES, **OTHER_LR_RANGES, "gd": LR_RANGES["sgd"], "lbfgs": (1e-2, 1.0)}


def parse_optimizers(value: str | Iterable[str]) -> list[str]:
    """``"gd,sgd,adam"`` or a list -> the names, checked, in the order given, without repeats."""
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or len(names) < 1:
        raise invalid_value("optimizers", value if isinstance(value, str) else ",".join(names),
                            f"a comma-separated list of: {', '.join(OPTIMIZERS)}")
    for name in names:
        check_installed(name)
    return list(dict.fromkeys(names))


def lr_grid(optimizer: str, points: int) -> list[float]:
    """``points`` learning rates spaced evenly in log scale over the optimiser's range, ends included."""
    points = check_number("points", points, low=1, integer=True)
    low, high = LR_GRID_RANGES[optimizer]
    if points == 1:
        return [math.sqrt(low * high)]
    step = (math.log10(high) - math.log10(low)) / (points - 1)
    return [float(f"{10 ** (math.log10(low) + i * step):.6g}") for i in range(points)]
