"""The transport of ``securefed simulate``: every client is a function call in this process.

Each sampled institution asks its privacy budget for this round's plan (a spent budget stops
it), trains from the global adapter on its own shard, and hands its delta to
``securefed.run.aggregation`` -- which runs the secure-aggregation state machines over
in-memory messages, or a plain weighted sum when secure aggregation is off. The ledgers stay
with this (simulated) server, so each round's outcome carries them for the record.

Every sampled institution's budget is asked *before* anyone trains. When the ones left
cannot be aggregated (``cohort_shortfall``: none, or too few for secure aggregation), the
round is skipped: nobody trains, so no update is computed or released and no ledger is
charged -- the exact epsilon, not an understated one -- and the run goes on to its end.
"""

from __future__ import annotations

import numpy as np

from securefed.privacy.budget import ClientPrivacy, Exhausted
from securefed.privacy.plan import LocalStats
from securefed.run.aggregation import AggregateResult, aggregate_round, cohort_shortfall
from securefed.run.federation import RoundOutcome, fedavg_weight
from securefed.run.progress import Progress
from securefed.run.setup import RunSetup, client_update


class InProcessTransport:
    """``Transport`` over function calls: clients train on ``setup``'s shards, one by one."""

    def __init__(self, setup: RunSetup, privacy: ClientPrivacy, progress: Progress) -> None:
        self.setup, self.privacy, self.progress = setup, privacy, progress

    def train_and_aggregate(
        self, round_index: int, sampled: list[int], global_vector: np.ndarray
    ) -> RoundOutcome:
        setup, privacy = self.setup, self.privacy
        plans = {c: privacy.plan_round(c, setup.local_steps(c)) for c in sampled}
        stopped = [c for c in sampled if plans[c] is privacy.EXHAUSTED]
        cohort = [c for c in sampled if c not in stopped]
        shortfall = cohort_shortfall(setup.cfg, cohort)
        if shortfall is not None:  # skipped before anyone trains: nothing released or charged
            return RoundOutcome(
                AggregateResult.skip(shortfall),
                budget_stopped=stopped,
                epsilon=privacy.epsilons(),
                ledgers=privacy.to_json(),
            )
        updates: dict[int, tuple[np.ndarray, LocalStats]] = {}
        for c in cohort:
            plan = plans[c]
            assert not isinstance(plan, Exhausted)
            updates[c] = client_update(setup, c, global_vector, round_index, plan, self.progress)
            privacy.record_round(c, round_index, updates[c][1])
        largest = max(len(t) for t in setup.client_train)
        weights = {
            c: fedavg_weight(setup.cfg, len(setup.client_train[c]), largest) for c in updates
        }
        return RoundOutcome(
            aggregate_round(
                setup.cfg,
                round_index,
                updates,
                weights,
                global_vector,
                setup.bundle.spec.hash,
                privacy.institution,
            ),
            budget_stopped=stopped,
            epsilon=privacy.epsilons(),
            ledgers=privacy.to_json(),
        )

    def deliver(self, global_vector: np.ndarray) -> float:
        """Nothing travels: every client shares this process's model."""
        return 0.0
