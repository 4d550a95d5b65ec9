"""Each institution's privacy budget across the run: noise plan, ledger, and when to stop.

Noise is calibrated once per institution for the whole *planned* run, assuming it takes part
in every round (the worst case, so the target is met whichever rounds it is sampled in).
Each round it trains, its DP-SGD steps are recorded as one event in its own ledger; before a
round, an institution whose ledger cannot afford the round stops training. With DP off, a
trained round is recorded as non-private (epsilon = infinity), never as nothing.
"""

from __future__ import annotations

import math

from securefed.config import RunConfig
from securefed.privacy.accounting import calibrate_noise_multiplier, default_delta
from securefed.privacy.institution import InstitutionPrivacy
from securefed.privacy.ledger import PrivacyLedger
from securefed.privacy.plan import DPPlan, LocalStats


class Exhausted:
    """The answer of ``plan_round`` for an institution whose budget cannot afford the round."""

    def __repr__(self) -> str:
        return "EXHAUSTED"


class ClientPrivacy:
    """The per-institution ledgers of one run, and the DP plan each round trains under.

    ``institution``: the federation's institution-level DP (``privacy.distributed``), where
    this party keeps it (the simulation's server); its ledger is saved and restored with
    the institutions' ledgers, in the same file, so a round commits both together.
    """

    EXHAUSTED = Exhausted()

    def __init__(
        self,
        cfg: RunConfig,
        train_sizes: list[int],
        steps_per_round: list[int],
        rounds: int | None = None,
        institution: InstitutionPrivacy | None = None,
    ) -> None:
        self.dp = cfg.privacy.dp
        self.institution = institution
        self.batch_size = cfg.training.batch_size
        self.training = cfg.training
        self.rounds = rounds if rounds is not None else cfg.training.rounds
        self.train_sizes = train_sizes
        self.ledgers: dict[int, PrivacyLedger] = {}
        self.noise: dict[int, float] = {}
        self.noise_sources: set[str] = set()  # generators DP-SGD actually drew from
        for c, n in enumerate(train_sizes):
            delta = default_delta(n) if self.dp.delta == "auto" else float(self.dp.delta)
            target = self.dp.target_epsilon if self.dp.enabled else None
            self.ledgers[c] = PrivacyLedger(client_id=c, delta=delta, target_epsilon=target)
            if self.dp.enabled:
                self.noise[c] = self._calibrate(c, delta, steps_per_round[c])

    def sample_rate(self, client: int) -> float:
        return min(1.0, self.batch_size / self.train_sizes[client])

    def _calibrate(self, client: int, delta: float, steps: int) -> float:
        if self.dp.noise_multiplier is not None:
            return float(self.dp.noise_multiplier)
        return calibrate_noise_multiplier(
            self.dp.target_epsilon,
            delta,
            self.sample_rate(client),
            self.rounds * steps,
            accountant=self.dp.accountant,
        )

    def plan_round(self, client: int, steps: int) -> DPPlan | Exhausted | None:
        """``None`` (no DP), a ``DPPlan``, or ``EXHAUSTED`` if the round would break the budget."""
        if not self.dp.enabled:
            return None
        if self.dp.target_epsilon is not None and not self._affords(client, steps):
            return self.EXHAUSTED
        return DPPlan(
            noise_multiplier=self.noise[client],
            max_grad_norm=self.dp.max_grad_norm,
            secure_mode=self.dp.secure_mode,
            noise_source=self.dp.noise_source,
            optimizer=self.training.dp_optimizer,
            lr=self.training.dp_lr,
            momentum=self.training.dp_momentum,
        )

    def affordable_steps(self, client: int, steps: int) -> int:
        """The most of ``steps`` DP-SGD steps that one more event can take within the target.

        All of them with DP off or no target; 0 when not even one step fits. A baseline trains
        as one event of many steps, so where the federation stops an institution before a round
        its budget cannot afford, a baseline stops at the step where its budget ends. Epsilon
        grows with the number of steps, so bisection finds the largest count that fits.
        """
        if not self.dp.enabled or self.dp.target_epsilon is None or self._affords(client, steps):
            return steps
        fits, breaks = 0, steps  # 0 steps always fit; ``steps`` does not
        while breaks - fits > 1:
            mid = (fits + breaks) // 2
            fits, breaks = (mid, breaks) if self._affords(client, mid) else (fits, mid)
        return fits

    def _affords(self, client: int, steps: int) -> bool:
        return self.ledgers[client].can_afford(
            noise_multiplier=self.noise[client],
            sample_rate=self.sample_rate(client),
            steps=steps,
            accountant=self.dp.accountant,
        )

    def record_round(self, client: int, round_index: int, stats: LocalStats) -> None:
        ledger = self.ledgers[client]
        if self.dp.enabled:
            ledger.record(
                noise_multiplier=self.noise[client],
                sample_rate=stats.sample_rate,
                steps=stats.steps,
                round_index=round_index,
            )
            if stats.noise_source is not None:
                self.noise_sources.add(stats.noise_source)
        else:
            ledger.record_non_private(steps=stats.steps, round_index=round_index)

    def epsilons(self) -> dict[str, float | str]:
        """Epsilon so far per institution (JSON-safe: infinity is written "inf")."""
        return {
            str(c): _json_safe(ledger.epsilon(self.dp.accountant))
            for c, ledger in self.ledgers.items()
        }

    def to_json(self) -> dict:
        out = {
            "dp_enabled": self.dp.enabled,
            "accountant": self.dp.accountant,
            "noise_multipliers": {str(c): s for c, s in self.noise.items()},
            "noise_sources": sorted(self.noise_sources),
            "ledgers": {str(c): ledger.to_json() for c, ledger in self.ledgers.items()},
        }
        if self.institution is not None:
            out["institution"] = self.institution.to_json()
        return out

    def restore(self, saved: dict) -> None:
        """Continue from a resumed run's ledgers (a fresh run must not reset them)."""
        for key, obj in saved["ledgers"].items():
            self.ledgers[int(key)] = PrivacyLedger.from_json(obj)
        self.noise = {int(k): float(v) for k, v in saved["noise_multipliers"].items()}
        self.noise_sources = set(saved.get("noise_sources", []))  # absent before this key
        if self.institution is not None:
            self.institution.restore(saved["institution"])

    def report(self) -> dict:
        """Per institution: epsilon by the accountant of record, cross-checks, the events;
        and the federation's institution-level report where distributed DP is on."""
        out = {
            "dp_enabled": self.dp.enabled,
            "accountant_of_record": self.dp.accountant,
            "noise_sources": sorted(self.noise_sources),
            "clients": {
                str(c): ledger.report(self.dp.accountant) for c, ledger in self.ledgers.items()
            },
        }
        if self.institution is not None:
            out["institution"] = self.institution.report()
        return out


def _json_safe(value: float) -> float | str:
    return "inf" if math.isinf(value) else value
