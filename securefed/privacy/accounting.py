"""Privacy accounting: recorded events in, (epsilon, delta) out; noise calibration.

securefed's only importer of dp_accounting. Opacus's PRV accountant is used here too (lazily:
importing it loads torch), behind dp_accounting's ``PrivacyAccountant`` interface so that all
three accountants and the calibration run through one code path.

What is accounted: one institution's records under the add-or-remove-one neighbouring
relation. Each DP-SGD step is the Poisson-subsampled Gaussian mechanism (sampling rate q,
noise multiplier sigma); the steps of all rounds compose adaptively. Events with the same
(sigma, q) are grouped into one self-composition (composition is commutative, so this is
exact; it also makes the ledger and the calibration evaluate the very same event). No
amplification from client sampling is applied: the server knows who took part.

Accountants:
- ``pld``: dp-accounting privacy-loss distributions (pessimistic discretisation): the figure
  of record.
- ``rdp``: dp-accounting Renyi DP with the Balle et al. 2020 conversion: a looser cross-check.
- ``prv``: Opacus PRV (Gopi et al. 2021), an independent numerical upper bound.
GDP is deliberately absent: its central-limit approximation can under-estimate epsilon.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any, Literal

from dp_accounting import dp_event, mechanism_calibration
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation, PrivacyAccountant
from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

from securefed.config import MIN_NOISE_MULTIPLIER
from securefed.privacy.events import (
    NonPrivateEvent,
    PoissonGaussianEvent,
    PrivacyEvent,
    event_from_json,
)

AccountantName = Literal["pld", "rdp", "prv"]
ACCOUNTANTS: tuple[AccountantName, ...] = ("pld", "rdp", "prv")
NEIGHBOURING_RELATION = "add_or_remove_one"

# The calibration searches sigma from the config's floor (explained there) up to this.
MAX_NOISE_MULTIPLIER = 2.0**20
PRV_EPS_ERROR = 0.01  # Opacus's default: PRV reports its estimate plus this error bound
_SEARCH_PLD_GRID = 1e-3  # PLD value discretization while searching; the ledger uses 1e-4


def default_delta(num_records: int) -> float:
    """``min(1e-5, 1 / N**1.1)``: well below 1/N, so releasing one whole record is not allowed."""
    if isinstance(num_records, bool) or not isinstance(num_records, int) or num_records < 1:
        raise ValueError(f"num_records must be an integer >= 1, got {num_records!r}")
    return min(1e-5, 1.0 / num_records**1.1)


def accountant_label(accountant: AccountantName) -> str:
    """The accountant and the library that computed it, e.g. ``pld (dp-accounting 0.6.0)``."""
    _check_name(accountant)
    if accountant == "prv":
        return f"prv (opacus {version('opacus')}, upper bound: estimate + {PRV_EPS_ERROR})"
    return f"{accountant} (dp-accounting {version('dp-accounting')})"


def to_dp_event(events: Iterable[PrivacyEvent]) -> dp_event.DpEvent:
    """One dp_accounting event for a sequence of privacy events (grouped by sigma and q)."""
    steps_by_mechanism: dict[tuple[float, float], int] = {}
    non_private = False
    for event in events:
        if isinstance(event, NonPrivateEvent):
            non_private = True
        else:
            key = (float(event.noise_multiplier), float(event.sample_rate))
            steps_by_mechanism[key] = steps_by_mechanism.get(key, 0) + event.steps
    parts: list[dp_event.DpEvent] = [
        dp_event.SelfComposedDpEvent(
            dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps
        )
        for (sigma, q), steps in sorted(steps_by_mechanism.items())
    ]
    if non_private:
        parts.append(dp_event.NonPrivateDpEvent())
    if not parts:
        return dp_event.NoOpDpEvent()
    return parts[0] if len(parts) == 1 else dp_event.ComposedDpEvent(parts)


def make_accountant(accountant: AccountantName) -> PrivacyAccountant:
    """A fresh accountant (add-or-remove-one) of the given kind."""
    _check_name(accountant)
    if accountant == "pld":
        return PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE)
    if accountant == "rdp":
        return RdpAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    return OpacusPRVAccountant()


def recompute_epsilon(
    events: Iterable[PrivacyEvent | Mapping[str, Any]],
    delta: float,
    accountant: AccountantName = "pld",
) -> float:
    """Epsilon at ``delta`` of all ``events`` (objects, or their JSON as written in a ledger).

    Infinite as soon as one event is non-private; 0.0 for no events.
    """
    _check_delta(delta)
    parsed = [event_from_json(e) for e in events]
    if any(isinstance(e, NonPrivateEvent) for e in parsed):
        return math.inf  # what every accountant returns; no need to compose the rest
    with _quiet_rdp_warnings():
        acct = make_accountant(accountant).compose(to_dp_event(parsed))
        return float(acct.get_epsilon(delta))


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    total_steps: int,
    accountant: AccountantName = "pld",
) -> float:
    """The smallest noise multiplier (within ~0.1%) whose run stays within ``target_epsilon``.

    The run is ``total_steps`` Poisson-subsampled Gaussian steps at ``sample_rate``, accounted
    exactly as the ledger will account them, so a ledger that records this run ends at an
    epsilon <= ``target_epsilon`` by construction. Never overshoots: the result is verified.
    Returns ``MIN_NOISE_MULTIPLIER`` if even that little noise meets the target.
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"target_epsilon must be finite and > 0, got {target_epsilon!r}")
    _check_name(accountant)
    _check_delta(delta)
    PoissonGaussianEvent(1.0, sample_rate, total_steps, 0)  # validates q and steps
    with _quiet_rdp_warnings():
        # RDP is cheap and, in practice, a little looser than PLD and PRV: its answer is a close
        # first guess (the bracket search below works from either side of it).
        sigma = _search(target_epsilon, delta, sample_rate, total_steps, "rdp", 1.0, 2.0)
        if accountant != "rdp" and sigma > MIN_NOISE_MULTIPLIER:
            sigma = _search(
                target_epsilon, delta, sample_rate, total_steps, accountant, sigma, 1.25
            )
        # Verify with the accountant the ledger uses; a coarse search PLD is pessimistic (its
        # grid is a multiple of the ledger's), so this loop almost never runs.
        run = PoissonGaussianEvent(sigma, sample_rate, total_steps, 0)
        while recompute_epsilon([run], delta, accountant) > target_epsilon:
            run = PoissonGaussianEvent(run.noise_multiplier * 1.001, sample_rate, total_steps, 0)
    return run.noise_multiplier


def _search(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    total_steps: int,
    accountant: AccountantName,
    guess: float,
    factor: float,
) -> float:
    """dp_accounting's calibration on a bracket found by stepping ``factor`` from ``guess``."""

    def make_search_accountant() -> PrivacyAccountant:
        if accountant == "pld":  # 10x faster than the ledger's 1e-4 grid, and pessimistic
            return PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE, _SEARCH_PLD_GRID)
        return make_accountant(accountant)

    def run_event(sigma: float) -> dp_event.DpEvent:
        return to_dp_event([PoissonGaussianEvent(sigma, sample_rate, total_steps, 0)])

    def epsilon_of(sigma: float) -> float:
        return make_search_accountant().compose(run_event(sigma)).get_epsilon(delta)

    # Bracket from the high-noise side: far below the answer epsilon explodes, and with it the
    # PLD's memory and time.
    high = guess
    while epsilon_of(high) > target_epsilon:
        high *= factor
        if high > MAX_NOISE_MULTIPLIER:
            raise ValueError(
                f"target_epsilon {target_epsilon} needs sigma > {MAX_NOISE_MULTIPLIER}"
            )
    low = high / factor
    while epsilon_of(low) <= target_epsilon:
        if low <= MIN_NOISE_MULTIPLIER:
            return MIN_NOISE_MULTIPLIER
        high, low = low, max(low / factor, MIN_NOISE_MULTIPLIER)
    return float(
        mechanism_calibration.calibrate_dp_mechanism(
            make_search_accountant,
            run_event,
            target_epsilon,
            delta,
            bracket_interval=mechanism_calibration.ExplicitBracketInterval(low, high),
            tol=1e-4,
        )
    )


@contextmanager
def _quiet_rdp_warnings() -> Iterator[None]:
    """Silence dp_accounting's RDP notes that it dropped a non-converging order.

    Dropping an order only loosens the RDP bound (the minimum over the remaining orders is
    still valid); at q near 0.5 it logs dozens of lines per call.
    """
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


class OpacusPRVAccountant(PrivacyAccountant):
    """Opacus's PRV accountant behind dp_accounting's interface.

    Accepts exactly what DP-SGD produces: Poisson-subsampled Gaussian events (possibly self-
    composed or composed), no-op and non-private events. Returns Opacus's upper bound on epsilon.
    """

    def __init__(self) -> None:
        super().__init__(NeighboringRelation.ADD_OR_REMOVE_ONE)
        self._history: list[tuple[float, float, int]] = []  # (sigma, q, steps), Opacus's format
        self._non_private = False

    def _maybe_compose(
        self, event: dp_event.DpEvent, count: int, do_compose: bool
    ) -> PrivacyAccountant.CompositionErrorDetails | None:
        if isinstance(event, dp_event.NoOpDpEvent):
            return None
        if isinstance(event, dp_event.NonPrivateDpEvent):
            self._non_private = self._non_private or do_compose
            return None
        if isinstance(event, dp_event.SelfComposedDpEvent):
            return self._maybe_compose(event.event, event.count * count, do_compose)
        if isinstance(event, dp_event.ComposedDpEvent):
            for part in event.events:
                error = self._maybe_compose(part, count, do_compose)
                if error is not None:
                    return error
            return None
        if isinstance(event, dp_event.PoissonSampledDpEvent) and isinstance(
            event.event, dp_event.GaussianDpEvent
        ):
            if do_compose and count > 0:
                sigma, q = event.event.noise_multiplier, event.sampling_probability
                self._history.append((sigma, q, count))
            return None
        return self.CompositionErrorDetails(
            invalid_event=event, error_message="PRV accepts Poisson-subsampled Gaussian only"
        )

    def get_epsilon(self, target_delta: float) -> float:
        if self._non_private:
            return math.inf
        if not self._history:
            return 0.0
        from opacus.accountants import PRVAccountant

        prv = PRVAccountant()
        prv.history = list(self._history)
        # Opacus sizes the PRV domain with an RDP bound and numpy overflows harmlessly in the
        # unused branch of an np.where; neither affects the certified upper bound returned.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message="Optimal order is the")
            return float(prv.get_epsilon(delta=target_delta, eps_error=PRV_EPS_ERROR))


def _check_name(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
