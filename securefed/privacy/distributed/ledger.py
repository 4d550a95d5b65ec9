"""The federation's institution-level ledger: one event per round, epsilon recomputed from all.

Beside each institution's sample-level ``PrivacyLedger`` (one record of that institution),
this ledger covers a whole institution's update (``events.INSTITUTION_RELATION``; what that
protects: ``events.INSTITUTION_PROTECTS``): every round's ``DistributedNoiseEvent`` records
the noise shares that reached the sum and the colluder bound c, so a round with dropouts is
accounted with the survivors' noise, never the planned amount, less the protected
institution's own share and the c colluders'. An auditor recomputes the epsilon from
``to_json()["events"]`` with ``accounting.institution_epsilon``.
"""

from __future__ import annotations

import math
from typing import Any

import dp_accounting as dpa

from securefed.privacy.distributed.accounting import RDP_ORDERS, institution_epsilon
from securefed.privacy.distributed.events import (
    INSTITUTION_PROTECTS,
    INSTITUTION_RELATION,
    DistributedNoiseEvent,
    event_from_json,
    event_to_json,
)
from securefed.privacy.event_ledger import EventLedger

INSTITUTION_LEDGER_FORMAT = "securefed.institution-ledger/2"  # 2: events carry colluders
INSTITUTION_CAVEATS = (
    f"institution-level DP protects {INSTITUTION_PROTECTS}; the c colluders' shares are not "
    "counted, but each further institution that omits its share, or reveals it to the server, "
    "lowers the noise that protects the others below what this epsilon accounts",
    "the subsampling amplification assumes institutions are Poisson-sampled at sample_rate; "
    "a round recorded with sample_rate 1.0 claims none",
    "plaintext metrics summed beside the update (extras: loss, accuracy, weights) are outside "
    "this epsilon",
)


class InstitutionLedger(EventLedger[DistributedNoiseEvent]):
    """The institution-level events of one federation and the (epsilon, delta) they add up to."""

    FORMAT = INSTITUTION_LEDGER_FORMAT
    RELATION = INSTITUTION_RELATION
    LABEL = "institution ledger"
    event_to_json = staticmethod(event_to_json)
    event_from_json = staticmethod(event_from_json)

    def record(self, event: DistributedNoiseEvent) -> None:
        """Record one round; rounds are recorded once each, in order."""
        self._append(event)

    def epsilon(self) -> float:
        """Epsilon at this ledger's delta of every recorded round (RDP, Zhu-Wang subsampling)."""
        return institution_epsilon(self._events, self.delta)

    def gaussian_reference_epsilon(self) -> float:
        """Epsilon of the continuous Gaussian with the same sensitivity and the protecting
        shares' variance (dp-accounting's exact subsampled-Gaussian RDP): what the
        discretisation costs."""
        accountant = dpa.rdp.RdpAccountant(list(RDP_ORDERS))
        for e in self._events:
            if e.protecting_shares < 1:
                return math.inf
            z = math.sqrt(e.protecting_shares * e.local_variance) / e.l2_sensitivity
            inner = dpa.GaussianDpEvent(z)
            accountant.compose(
                inner if e.sample_rate == 1.0 else dpa.PoissonSampledDpEvent(e.sample_rate, inner)
            )
        return float(accountant.get_epsilon(self.delta))

    def report(self) -> dict[str, Any]:
        """The audit record: epsilon, the Gaussian reference, each round's noise shares."""
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "accountant": "RDP (Skellam: Agarwal et al. 2021; DDGauss: Kairouz et al. 2021 "
            "Prop. 14) with Zhu-Wang Poisson subsampling; dp-accounting RDP-to-epsilon",
            "gaussian_reference_epsilon": self.gaussian_reference_epsilon(),
            "neighbouring_relation": INSTITUTION_RELATION,
            "unit": "one institution",
            "target_epsilon": self.target_epsilon,
            "rounds": [e.round_index for e in self._events],
            "noise_contributors": [e.noise_contributors for e in self._events],
            "colluders": [e.colluders for e in self._events],
            "protecting_shares": [e.protecting_shares for e in self._events],
            "events": [event_to_json(e) for e in self._events],
            "caveats": list(INSTITUTION_CAVEATS),
        }
