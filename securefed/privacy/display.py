"""How an epsilon is shown to a reader: rounded UP, never down.

A rounded epsilon below the computed one would claim more privacy than the accounting gives
(0.999948 shown as 0.9999). Every table, report, plot label and terminal line that shows a
claimed epsilon goes through ``epsilon_text``; files keep the full value (JSON, CSV).
Empirical lower bounds are not claims and keep their own formatting. No dependencies.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal


def round_up(value: float, digits: int) -> float:
    """The smallest number of ``digits`` significant figures at or above ``value``, read as
    the shortest decimal that prints it (repr: 0.1 stays 0.1)."""
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    if value == 0 or not math.isfinite(value):
        return value
    exact = Decimal(repr(float(value)))
    step = Decimal(1).scaleb(exact.adjusted() - digits + 1)  # 10^(exponent of the last digit)
    up = exact.quantize(step, rounding=ROUND_CEILING)
    result = float(up)
    # a float nearest to the decimal may sit below it: take the next one up
    return result if Decimal(repr(result)) >= exact else math.nextafter(result, math.inf)


def epsilon_text(value: object, digits: int = 4, infinity: str = "∞") -> str | None:
    """An epsilon (a number, or the JSON strings "inf" / "nan") rounded up to ``digits``
    significant figures, integers in full above 10^digits; None stays None."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]  # numbers and "inf"/"nan" strings
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return infinity if number > 0 else f"-{infinity}"
    if abs(number) >= 10**digits:
        return str(math.ceil(number))
    return f"{round_up(number, digits):.{digits}g}"
