"""Numbers given by users, read as floats without `OverflowError`.

Python ints have no upper bound but floats stop near 1.8e308: `float(2**1100)` and
`math.isfinite(2**1100)` raise `OverflowError`. Every option that takes a number of
seconds reads it through `as_float`, which turns such an int into an infinity, so the
option's own range check refuses it by name (or caps it) instead of a bare traceback.
"""

from __future__ import annotations

import math


def as_float(value: float) -> float:
    """`value` as a float; an int too large for one is `inf` (or `-inf`)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
