"""What every privacy ledger shares: events recorded once per round, in order, with a delta and
an optional target, written to JSON and read back with every key checked.

``PrivacyLedger`` (one institution's DP-SGD, one record as the unit) and ``InstitutionLedger``
(the federation's distributed noise, one institution as the unit) subclass it; each names its
JSON format, neighbouring relation and event codec, and what it adds to the JSON header.
No dependencies beyond ``securefed.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from securefed.errors import RunFolderError


class RoundEvent(Protocol):
    @property
    def round_index(self) -> int: ...


E = TypeVar("E", bound=RoundEvent)


class EventLedger(Generic[E]):
    """Round events and the (delta, target epsilon) they are accounted at."""

    FORMAT: ClassVar[str]
    RELATION: ClassVar[str]
    LABEL: ClassVar[str]  # how error messages name this kind of ledger
    HEADER_KEYS: ClassVar[tuple[str, ...]] = ()  # what a subclass adds to the JSON header
    event_to_json: ClassVar[Callable[[Any], dict[str, Any]]]
    event_from_json: ClassVar[Callable[[Any], Any]]

    def __init__(
        self, delta: float, target_epsilon: float | None = None, events: Sequence[E] = ()
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if target_epsilon is not None and not (
            math.isfinite(target_epsilon) and target_epsilon > 0
        ):
            raise ValueError(
                f"target_epsilon must be finite and > 0 or None, got {target_epsilon!r}"
            )
        self.delta = float(delta)
        self.target_epsilon = None if target_epsilon is None else float(target_epsilon)
        self._events: list[E] = []
        for event in events:
            self._append(event)

    @property
    def events(self) -> tuple[E, ...]:
        return tuple(self._events)

    def _owner(self) -> str:
        """Who the ledger belongs to, for error messages."""
        return self.LABEL

    def _header(self) -> dict[str, Any]:
        """The subclass's own JSON keys (``HEADER_KEYS``), written after ``format``."""
        return {}

    def _append(self, event: E) -> None:
        if self._events and event.round_index <= self._events[-1].round_index:
            raise ValueError(
                f"{self._owner()}: round {event.round_index} recorded after round "
                f"{self._events[-1].round_index}; rounds must be recorded once, in order"
            )
        self._events.append(event)

    def to_json(self) -> dict[str, Any]:
        """Everything needed to continue this ledger or recompute its epsilon: events as data."""
        return {
            "format": self.FORMAT,
            **self._header(),
            "delta": self.delta,
            "target_epsilon": self.target_epsilon,
            "neighbouring_relation": self.RELATION,
            "events": [type(self).event_to_json(e) for e in self._events],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Continue a ledger written by ``to_json`` (a resumed run); malformed input is refused."""
        expected = {"format", *cls.HEADER_KEYS, "delta", "target_epsilon"}
        expected |= {"neighbouring_relation", "events"}
        if not isinstance(obj, Mapping) or set(obj) != expected:
            raise RunFolderError(f"{cls.LABEL}: keys must be exactly {sorted(expected)}")
        if obj["format"] != cls.FORMAT or obj["neighbouring_relation"] != cls.RELATION:
            raise RunFolderError(
                f"{cls.LABEL}: format {obj['format']!r} / relation "
                f"{obj['neighbouring_relation']!r}; this version reads {cls.FORMAT!r} / "
                f"{cls.RELATION!r}"
            )
        header = {key: obj[key] for key in cls.HEADER_KEYS}
        try:
            return cls(
                **header,
                delta=obj["delta"],
                target_epsilon=obj["target_epsilon"],
                events=[cls.event_from_json(e) for e in obj["events"]],
            )
        except (TypeError, ValueError) as exc:
            owner = " ".join(f"{k} {v!r}" for k, v in header.items())
            raise RunFolderError(f"{cls.LABEL}{' of ' + owner if owner else ''}: {exc}") from None
