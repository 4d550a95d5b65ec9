"""Institution-level privacy events: what one round's noisy secure sum released.

``DistributedNoiseEvent`` records, for one round, the noise that actually reached the sum
(the survivors' shares, never the planned amount) in the integer domain it was added in,
so an auditor recomputes epsilon from the JSON alone with ``accounting.institution_epsilon``.
``sample_rate`` is the Poisson rate at which institutions were invited (1.0: no amplification
claimed).

The neighbouring relation and what it protects are stated here and only here
(``INSTITUTION_RELATION``, ``INSTITUTION_PROTECTS``); the ledger, the audit, README.md and
threat_model.md quote them. ``protecting_shares`` is the relation in code: in a sum that n
shares reached, n - 1 - c protect one institution. Removing an institution removes its own
noise share with its update (Agarwal, Kairouz and Liu 2021 count the n shares of a sum
against a change of one input whose noise stays; under add/remove it does not), and the
threat model grants the adversary up to c colluding institutions (c = floor(corrupt_fraction
x cohort size), ``secagg.params.cohort_colluders``, the bound secure aggregation's threshold
is secure against), each of which knows its own share or omits it: their shares are
known to the adversary and protect nobody. The bound holds because the released sum is a
post-processing of (the honest others' noisy sum plus the institution's update, the
institution's own share, the colluders' shares), and those shares are independent of its data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

from securefed.errors import RunFolderError

INSTITUTION_RELATION = (
    "add or remove one institution: its clipped update leaves the sum together with its own "
    "noise share, and the c = floor(corrupt_fraction x cohort size) colluding institutions "
    "the threat model allows know their own shares, so in a sum that n shares reached only "
    "the other n - 1 - c shares protect it"
)
INSTITUTION_PROTECTS = (
    "the content of one institution's update (everything its clipped update carries), against "
    "anyone who sees the released sums, the server and up to c colluding institutions "
    "included, provided the other institutions add their noise shares and keep them secret; "
    "not against more than c colluders; not whether it took part: cohorts come from the "
    "public seed and the server sees the signed survivor set"
)

Mechanism = Literal["skellam", "dgauss"]
MECHANISMS: tuple[str, ...] = ("skellam", "dgauss")


def protecting_shares(noise_contributors: int, colluders: int) -> int:
    """The noise shares that protect any one institution in a sum that ``noise_contributors``
    shares reached: all but its own and the ``colluders``' (``INSTITUTION_RELATION``); below 1
    nothing honest protects it."""
    return noise_contributors - 1 - colluders


@dataclass(frozen=True)
class DistributedNoiseEvent:
    """One round of distributed discrete noise inside the secure sum.

    ``local_variance``: each contributor's noise variance (Skellam) or sigma^2 of its discrete
    Gaussian (dgauss); ``l2_sensitivity`` / ``l1_sensitivity``: bounds on one institution's
    rounded integer vector; ``dimension``: length of that vector (the padded dimension);
    ``colluders``: c, the colluding institutions whose shares protect nobody (counted as if
    all of them were among the ``noise_contributors``).
    """

    mechanism: Mechanism
    round_index: int
    sample_rate: float
    noise_contributors: int
    local_variance: float
    l2_sensitivity: float
    l1_sensitivity: float
    dimension: int
    colluders: int
    kind: ClassVar[str] = "distributed_noise"

    @property
    def protecting_shares(self) -> int:
        """The noise shares that protect any one institution in this round's sum."""
        return protecting_shares(self.noise_contributors, self.colluders)

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        for name in ("round_index", "noise_contributors", "dimension", "colluders"):
            value = getattr(self, name)
            low = 0 if name in ("round_index", "colluders") else 1
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
