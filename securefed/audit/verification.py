"""The record ``--verify`` builds: how many claims it checked, and each one that does not hold.

``verify`` and the check modules (``epsilons``, ``institution``) write into one
``Verification``; a recorded and a recomputed figure are the same when equal within
``EPSILON_REL_TOL`` (infinity as the string "inf" included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from securefed.audit.source import as_float

EPSILON_REL_TOL = 1e-6


@dataclass(frozen=True)
class Mismatch:
    """One claim that does not hold: where, what was recorded, what is there now."""

    check: str
    where: str
    recorded: str
    found: str


@dataclass
class Verification:
    checks: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def expect(self, check: str, where: str, recorded: object, found: object) -> None:
        self.checks += 1
        if not _same(recorded, found):
            self.mismatches.append(Mismatch(check, where, _show(recorded), _show(found)))

    def to_json(self) -> dict:
        return {
            "verified": self.ok,
            "checks": self.checks,
            "mismatches": [asdict(m) for m in self.mismatches],
            "notes": list(self.notes),
        }


def _same(a: object, b: object) -> bool:
    a, b = _number(a), _number(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        x, y = as_float(a), as_float(b)
        if math.isinf(x) or math.isinf(y) or math.isnan(x) or math.isnan(y):
            return x == y or (math.isnan(x) and math.isnan(y))
        return math.isclose(x, y, rel_tol=EPSILON_REL_TOL, abs_tol=1e-12)
    return a == b


def _number(value: object) -> object:
    """Ledger reports write an infinite epsilon as the string "inf"; compare it as a number."""
    return float(value) if isinstance(value, str) and value in ("inf", "-inf", "nan") else value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
