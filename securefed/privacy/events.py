"""Privacy events: what one institution's training released, recorded as immutable data.

An event is the unit of privacy accounting (dp_accounting's ``DpEvent`` idea, kept as plain
JSON-able data so that a run folder alone lets an auditor recompute every epsilon):

- ``PoissonGaussianEvent``: ``steps`` DP-SGD steps of one round, each the Poisson-subsampled
  Gaussian mechanism with sampling rate ``sample_rate`` and noise multiplier
  ``noise_multiplier`` (noise std / per-example clip norm).
- ``NonPrivateEvent``: a round that trained on the records without DP. Epsilon is infinite
  from then on; such a round is recorded, never skipped.

This module has no dependencies; ``accounting`` turns events into epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from securefed.errors import RunFolderError


def _check_round_and_steps(round_index: int, steps: int) -> None:
    if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 0:
        raise ValueError(f"round_index must be an integer >= 0, got {round_index!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


@dataclass(frozen=True)
class PoissonGaussianEvent:
    """One round of DP-SGD: ``steps`` Poisson-subsampled Gaussian steps."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    round_index: int
    kind: ClassVar[str] = "poisson_gaussian"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(
                f"noise_multiplier must be finite and > 0, got {self.noise_multiplier!r} "
                "(a round without noise is a NonPrivateEvent)"
            )
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        _check_round_and_steps(self.round_index, self.steps)


@dataclass(frozen=True)
class NonPrivateEvent:
    """One round trained on the records without DP (epsilon = infinity)."""

    steps: int
    round_index: int
    kind: ClassVar[str] = "non_private"

    def __post_init__(self) -> None:
        _check_round_and_steps(self.round_index, self.steps)


PrivacyEvent = PoissonGaussianEvent | NonPrivateEvent
_EVENT_TYPES: dict[str, type[PoissonGaussianEvent] | type[NonPrivateEvent]] = {
    PoissonGaussianEvent.kind: PoissonGaussianEvent,
    NonPrivateEvent.kind: NonPrivateEvent,
}


def event_to_json(event: PrivacyEvent) -> dict[str, Any]:
    """The event as a JSON object: ``{"kind": ..., <fields>}``."""
    return {"kind": event.kind, **asdict(event)}


def event_from_json(obj: Mapping[str, Any] | PrivacyEvent) -> PrivacyEvent:
    """Parse one event written by ``event_to_json``; unknown kinds or keys are refused."""
    if isinstance(obj, PoissonGaussianEvent | NonPrivateEvent):
        return obj
    if not isinstance(obj, Mapping) or obj.get("kind") not in _EVENT_TYPES:
        raise RunFolderError(f"privacy event {obj!r}: 'kind' must be one of {sorted(_EVENT_TYPES)}")
    cls = _EVENT_TYPES[obj["kind"]]
    values = {k: v for k, v in obj.items() if k != "kind"}
    expected = {f.name for f in fields(cls)}
    if set(values) != expected:
        raise RunFolderError(
            f"privacy event {dict(obj)!r}: keys must be exactly {sorted(expected)} plus 'kind'"
        )
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise RunFolderError(f"privacy event {dict(obj)!r}: {exc}") from None
