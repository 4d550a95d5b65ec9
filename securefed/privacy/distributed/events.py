"""Institution-level privacy events: what one round's noisy secure sum released.

``DistributedNoiseEvent`` records, for one round, the noise that actually reached the sum
(the survivors' shares, never the planned amount) in the integer domain it was added in,
so an auditor recomputes epsilon from the JSON alone with ``accounting.institution_epsilon``.
The neighbouring relation is add-or-remove one institution's whole update; ``sample_rate``
is the Poisson rate at which institutions were invited (1.0: no amplification claimed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

from securefed.errors import RunFolderError

Mechanism = Literal["skellam", "dgauss"]
MECHANISMS: tuple[str, ...] = ("skellam", "dgauss")


@dataclass(frozen=True)
class DistributedNoiseEvent:
    """One round of distributed discrete noise inside the secure sum.

    ``local_variance``: each contributor's noise variance (Skellam) or sigma^2 of its discrete
    Gaussian (dgauss); ``l2_sensitivity`` / ``l1_sensitivity``: bounds on one institution's
    rounded integer vector; ``dimension``: length of that vector (the padded dimension).
    """

    mechanism: Mechanism
    round_index: int
    sample_rate: float
    noise_contributors: int
    local_variance: float
    l2_sensitivity: float
    l1_sensitivity: float
    dimension: int
    kind: ClassVar[str] = "distributed_noise"

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        for name in ("round_index", "noise_contributors", "dimension"):
            value = getattr(self, name)
            low = 0 if name == "round_index" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        for name in ("local_variance", "l2_sensitivity", "l1_sensitivity"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def event_to_json(event: DistributedNoiseEvent) -> dict[str, Any]:
    """The event as a JSON object: ``{"kind": "distributed_noise", <fields>}``."""
    return {"kind": event.kind, **asdict(event)}


def event_from_json(obj: Mapping[str, Any]) -> DistributedNoiseEvent:
    """Parse one event written by ``event_to_json``; other kinds or keys are refused."""
    if not isinstance(obj, Mapping) or obj.get("kind") != DistributedNoiseEvent.kind:
        raise RunFolderError(
            f"institution-level event {obj!r}: 'kind' must be {DistributedNoiseEvent.kind!r}"
        )
    values = {k: v for k, v in obj.items() if k != "kind"}
    expected = {f.name for f in fields(DistributedNoiseEvent)}
    if set(values) != expected:
        raise RunFolderError(
            f"institution-level event {dict(obj)!r}: keys must be exactly {sorted(expected)} "
            "plus 'kind'"
        )
    try:
        return DistributedNoiseEvent(**values)
    except (TypeError, ValueError) as exc:
        raise RunFolderError(f"institution-level event {dict(obj)!r}: {exc}") from None
