"""One institution's privacy ledger: every round's DP-SGD recorded as an event, epsilon from all.

The ledger is the single accountant of one client for the whole run. It persists across
rounds and, through ``to_json``/``from_json``, across a resumed run: nothing about a fresh
round (or a fresh Opacus object) resets it. Epsilon is never a running float; it is
recomputed from the recorded events, by dp-accounting's PLD accountant as the figure of
record, with RDP and Opacus PRV beside it as cross-checks. An auditor needs only the JSON:
``recompute_epsilon(obj["events"], obj["delta"], "pld")`` gives the same number.

Guarantee stated: (epsilon, delta)-DP for one record of this institution (add-or-remove-one),
against anyone who sees anything the institution's training released. A round that trained
without DP is recorded as non-private, and epsilon is infinite from then on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from securefed.privacy.accounting import (
    ACCOUNTANTS,
    NEIGHBOURING_RELATION,
    AccountantName,
    accountant_label,
    calibrate_noise_multiplier,
    default_delta,
    recompute_epsilon,
)
from securefed.privacy.event_ledger import EventLedger
from securefed.privacy.events import (
    NonPrivateEvent,
    PoissonGaussianEvent,
    PrivacyEvent,
    event_from_json,
    event_to_json,
)

# Re-exported: the ledger's callers plan noise and delta with these.
__all__ = [
    "CAVEATS",
    "LEDGER_FORMAT",
    "PrivacyLedger",
    "calibrate_noise_multiplier",
    "default_delta",
    "recompute_epsilon",
    "would_exceed",
]

LEDGER_FORMAT = "securefed.privacy-ledger/1"
# Stated in every report, so the run's record carries them (threat_model.md has the detail).
CAVEATS = (
    "sample-level DP: one training record of this institution (add or remove one); k records "
    "of one person get about k x epsilon; the institution's participation is not protected",
    "metrics computed from records without noise (training loss, counts, test accuracy) are "
    "outside this epsilon",
    "noise and Poisson sampling come from an AES-256-CTR keystream keyed from os.urandom "
    "(privacy.dp.noise_source aes_ctr), or from torch generators (noise_source torch, with "
    "privacy.dp.secure_mode for torchcsprng); floating-point Gaussian sampling is not proof "
    "against floating-point attacks",
)


def would_exceed(
    events: Sequence[PrivacyEvent],
    next_event: PrivacyEvent,
    *,
    target_epsilon: float,
    delta: float,
    accountant: AccountantName = "pld",
) -> bool:
    """Whether recording ``next_event`` after ``events`` would take epsilon past the target."""
    return recompute_epsilon([*events, next_event], delta, accountant) > target_epsilon


class PrivacyLedger(EventLedger[PrivacyEvent]):
    """The privacy events of one client (institution) and the (epsilon, delta) they add up to."""

    FORMAT = LEDGER_FORMAT
    RELATION = NEIGHBOURING_RELATION
    LABEL = "privacy ledger"
    HEADER_KEYS = ("client_id",)
    event_to_json = staticmethod(event_to_json)
    event_from_json = staticmethod(event_from_json)

    def __init__(
        self,
        client_id: int,
        delta: float,
        target_epsilon: float | None = None,
        events: Sequence[PrivacyEvent] = (),
    ) -> None:
        self.client_id = client_id
        super().__init__(delta, target_epsilon, events)

    def record(
        self, *, noise_multiplier: float, sample_rate: float, steps: int, round_index: int
    ) -> PoissonGaussianEvent:
        """Record one round of DP-SGD. Always records: privacy spent is spent, budget or not."""
        event = PoissonGaussianEvent(
            float(noise_multiplier), float(sample_rate), steps, round_index
        )
        self._append(event)
        return event

    def record_non_private(self, *, steps: int, round_index: int) -> NonPrivateEvent:
        """Record a round that trained on the records without DP (epsilon becomes infinite)."""
        event = NonPrivateEvent(steps, round_index)
        self._append(event)
        return event

    def epsilon(self, accountant: AccountantName = "pld") -> float:
        """Epsilon at this ledger's delta of everything recorded so far."""
        return recompute_epsilon(self._events, self.delta, accountant)

    def epsilon_after(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        accountant: AccountantName = "pld",
    ) -> float:
        """Epsilon if one more DP-SGD round like this were recorded (nothing is recorded)."""
        nxt = self._next_event(noise_multiplier, sample_rate, steps)
        return recompute_epsilon([*self._events, nxt], self.delta, accountant)

    def can_afford(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        accountant: AccountantName = "pld",
    ) -> bool:
        """Whether one more such round stays within ``target_epsilon`` (always, with no target)."""
        if self.target_epsilon is None:
            return True
        nxt = self._next_event(noise_multiplier, sample_rate, steps)
        return not would_exceed(
            self._events,
            nxt,
            target_epsilon=self.target_epsilon,
            delta=self.delta,
            accountant=accountant,
        )

    def report(self, accountant: AccountantName = "pld") -> dict[str, Any]:
        """The audit record: epsilon by ``accountant``, the other two as cross-checks, the events.

        JSON-safe: an infinite epsilon (a non-private round) is written as the string "inf".
        ``noise_multiplier`` and ``sample_rate`` are null when they varied across rounds (the
        events hold each round's values).
        """
        private = [e for e in self._events if isinstance(e, PoissonGaussianEvent)]
        sigmas = {e.noise_multiplier for e in private}
        rates = {e.sample_rate for e in private}
        return {
            "client_id": self.client_id,
            "epsilon": _json_number(self.epsilon(accountant)),
            "delta": self.delta,
            "accountant": accountant_label(accountant),
            "cross_checks": {
                other: _json_number(self.epsilon(other))
                for other in ACCOUNTANTS
                if other != accountant
            },
            "cross_check_accountants": {
                other: accountant_label(other) for other in ACCOUNTANTS if other != accountant
            },
            "neighbouring_relation": NEIGHBOURING_RELATION,
            "unit": "one record of this institution",
            "target_epsilon": self.target_epsilon,
            "all_rounds_private": len(private) == len(self._events),
            "noise_multiplier": sigmas.pop() if len(sigmas) == 1 else None,
            "sample_rate": rates.pop() if len(rates) == 1 else None,
            "steps": sum(e.steps for e in self._events),
            "rounds": [e.round_index for e in self._events],
            "events": [event_to_json(e) for e in self._events],
            "caveats": list(CAVEATS),
        }

    def _owner(self) -> str:
        return f"client {self.client_id}"

    def _header(self) -> dict[str, Any]:
        return {"client_id": self.client_id}

    def _next_event(self, noise_multiplier: float, sample_rate: float, steps: int) -> PrivacyEvent:
        last = self._events[-1].round_index + 1 if self._events else 0
        return PoissonGaussianEvent(float(noise_multiplier), float(sample_rate), steps, last)

    def __repr__(self) -> str:
        return (
            f"PrivacyLedger(client_id={self.client_id}, delta={self.delta}, "
            f"target_epsilon={self.target_epsilon}, events={len(self._events)})"
        )


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else "inf"
