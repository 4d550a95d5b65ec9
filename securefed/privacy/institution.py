"""One run's institution-level DP (``privacy.distributed``): its plan, each round's codec, its
ledger.

The plan is made once, when the run starts, for the whole planned run: ``training.rounds``
rounds, each carrying at least the noise shares of the smallest survivor set that secure
aggregation's threshold allows among ``training.clients_per_round`` invited institutions,
less the protected institution's own and the shares of the c colluders the threat model
allows in the cohort (``secagg.params.cohort_colluders``, the bound the threshold is secure
against; ``securefed.privacy.distributed.parameters``). Each round the server records the
shares that actually reached the sum -- the institutions whose masked input is in it -- so
the ledger's epsilon is what the survivors' noise gives, never the planned amount.

Client sampling: the round loop invites a fixed-size cohort drawn without replacement, not a
Poisson sample, so no amplification by sampling is claimed: every event carries sample_rate
1.0 (each round is accounted as if every institution were in it). The invitation rate is
recorded beside it (``invitation_rate``) for the reader.
"""

from __future__ import annotations

from typing import Any

from securefed.config import RunConfig
from securefed.errors import ConfigError
from securefed.plan_inputs import PlanInputs, plan_inputs
from securefed.privacy.distributed.encoding import DistributedDpCodec, round_rotation_seed
from securefed.privacy.distributed.events import protecting_shares
from securefed.privacy.distributed.ledger import InstitutionLedger
from securefed.privacy.distributed.parameters import (
    DistributedDpPlan,
    central_noise_std,
    institution_delta,
    plan_distributed_dp,
)
from securefed.secagg import QuantizationParams, plan_round
from securefed.secagg.params import cohort_colluders

CLAIMED_SAMPLE_RATE = 1.0  # fixed-size cohorts are not Poisson samples: no amplification


def plan_for_run(inputs: PlanInputs, dimension: int) -> DistributedDpPlan:
    """The distributed-DP plan of a run whose adapter has ``dimension`` coordinates (on a
    Flower node, from the node's own pinned ``inputs``); ``ConfigError`` when no noise level
    reaches the target at these bits and dimension, or when the smallest survivor set leaves
    no protecting share beyond the colluders'."""
    ddp, params, k = inputs.distributed, inputs.secure_aggregation, inputs.cohort_size
    delta = institution_delta(inputs.institutions) if ddp.delta == "auto" else ddp.delta
    threshold = plan_round(k, params).threshold
    colluders = cohort_colluders(k, params.corrupt_fraction)
    if protecting_shares(threshold, colluders) < 1:
        raise ConfigError(
            "secure_aggregation.threshold",
            threshold,
            f"at least {colluders + 2} with privacy.distributed on: in the smallest survivor "
            f"set (t = {threshold} of training.clients_per_round = {k}) the noise protecting "
            f"one institution is t - 1 - c shares, with c = {colluders} colluders "
            f"(secure_aggregation.corrupt_fraction = {params.corrupt_fraction}) and it must be "
            "at least 1; raise the threshold or lower secure_aggregation.dropout_budget",
        )
    try:
        return plan_distributed_dp(
            mechanism=ddp.mechanism,
            target_epsilon=ddp.target_epsilon,
            delta=float(delta),
            clip_norm=ddp.clip_norm,
            bits=params.bits,
            dimension=dimension,
            cohort_size=k,
            min_survivors=threshold,
            colluders=colluders,
            sample_rate=CLAIMED_SAMPLE_RATE,
            rounds=inputs.rounds,
            modclip_probability=ddp.modclip_probability,
        )
    except ValueError as exc:
        raise ConfigError(
            "privacy.distributed.target_epsilon", ddp.target_epsilon, str(exc)
        ) from None


def distributed_codec(
    plan: DistributedDpPlan,
    extras_params: QuantizationParams,
    global_adapter_hash: bytes,
    round_index: int,
) -> DistributedDpCodec:
    """A round's encoder and decoder under ``plan``: the server's (``InstitutionPrivacy``) and
    each Flower node's, which holds only the plan (its rotation seed is public, per round)."""
    seed = round_rotation_seed(global_adapter_hash, round_index)
    return DistributedDpCodec(plan, extras_params, seed)


class InstitutionPrivacy:
    """The federation's institution-level plan and ledger (kept by the server)."""

    def __init__(self, cfg: RunConfig, dimension: int) -> None:
        self.plan = plan_for_run(plan_inputs(cfg), dimension)
        self.extras_params = cfg.secure_aggregation.params().quantization
        self.invitation_rate = cfg.training.clients_per_round / cfg.partition.num_clients
        self.ledger = InstitutionLedger(self.plan.delta, self.plan.target_epsilon)

    def codec(self, round_index: int, global_adapter_hash: bytes) -> DistributedDpCodec:
        """This round's encoder and decoder (its rotation seed is public and per round)."""
        return distributed_codec(self.plan, self.extras_params, global_adapter_hash, round_index)

    def record(self, round_index: int, noise_contributors: int) -> None:
        """Record a round whose sum carries ``noise_contributors`` noise shares."""
        self.ledger.record(self.plan.event(round_index, noise_contributors))

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_json(),
            "invitation_rate": self.invitation_rate,
            "ledger": self.ledger.to_json(),
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue a resumed run's ledger; its plan must be the one this run makes."""
        if saved["plan"] != self.plan.to_json():
            raise ConfigError(
                "privacy.distributed",
                "resumed run",
                "the plan the run started with (privacy/ledgers.json institution.plan)",
            )
        self.ledger = InstitutionLedger.from_json(saved["ledger"])

    def report(self) -> dict[str, Any]:
        """The ledger's report, with the plan and the noise each round's sum carried."""
        return {
            **self.ledger.report(),
            "plan": self.plan.to_json(),
            "invitation_rate": self.invitation_rate,
            "claimed_sample_rate": CLAIMED_SAMPLE_RATE,
            "central_noise_std": [
                central_noise_std(self.plan, e.noise_contributors) for e in self.ledger.events
            ],
        }
