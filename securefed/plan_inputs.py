"""Everything in a run config that shapes a round's plan, as one typed value.

A round's plan is what every party derives before any message: secure aggregation's graph,
degree and threshold (``secagg.plan_round``), each client's ``secagg.RoundContext`` (cohort
size, protocol parameters, how many masked scalars follow the delta) and distributed DP's
noise plan (``privacy.institution.plan_for_run``). Those planners read the run config only
through ``PlanInputs``.

A Flower node builds its own ``PlanInputs`` from its node config (``flower.node_security``),
plans every round from it, and refuses a server whose ``plan_inputs(config)`` differs in any
field. The pinned set is not a list: ``pinned_fields`` walks the fields of ``PlanInputs``
(and of the sections it nests), so a field added here is pinned, under a node-config key
derived from its name, by construction.

May import: ``config``, ``secagg``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from securefed.config import DistributedDPConfig, RunConfig
from securefed.secagg import SecAggParams

# SecAggParams fields a node takes from its own files (its roster and private key), never
# from any config: they are pinned by the node, not compared with the server's.
NODE_IDENTITY = ("roster", "identity_keys")


def _scalar(config: str) -> Any:
    """A field read from one run-config key; its node-config key is the field's name."""
    return field(metadata={"config": config})


def _section(config: str, node_prefix: str) -> Any:
    """A nested config section: each of its fields is an input, ``node_prefix`` + its name."""
    return field(metadata={"config": config, "node_prefix": node_prefix})


@dataclass(frozen=True)
class PlanInputs:
    """The run-config values the round planners read, and nothing else."""

    cohort_size: int = _scalar("training.clients_per_round")  # invited per round
    institutions: int = _scalar("partition.num_clients")  # distributed DP's delta: auto
    rounds: int = _scalar("training.rounds")  # distributed DP's noise covers this many
    dp_sgd: bool = _scalar("privacy.dp.enabled")  # with it the loss is not summed (extras)
    secure_aggregation: SecAggParams = _section("secure_aggregation", "secagg-")
    distributed: DistributedDPConfig = _section("privacy.distributed", "ddp-")


@dataclass(frozen=True)
class Pinned:
    """One pinned input: where it lives in ``PlanInputs``, the run config and a node config."""

    attrs: tuple[str, ...]  # attribute path in PlanInputs
    config_key: str  # e.g. "training.clients_per_round"
    node_key: str  # e.g. "cohort-size"

    def of(self, inputs: PlanInputs) -> Any:
        value: Any = inputs
        for name in self.attrs:
            value = getattr(value, name)
        return value


def _names(section_type: type) -> Iterator[str]:
    if dataclasses.is_dataclass(section_type):
        yield from (f.name for f in dataclasses.fields(section_type))
    else:
        yield from section_type.model_fields  # a pydantic config section


def pinned_fields(inputs_type: type = PlanInputs) -> tuple[Pinned, ...]:
    """Every input of ``inputs_type``, walked from its fields (sections flattened)."""
    out, types = [], typing.get_type_hints(inputs_type)
    for f in dataclasses.fields(inputs_type):
        config = f.metadata["config"]  # KeyError: a plan input must say where it comes from
        if "node_prefix" not in f.metadata:
            out.append(Pinned((f.name,), config, f.name.replace("_", "-")))
            continue
        for name in _names(types[f.name]):
            if name in NODE_IDENTITY:
                continue
            key = f.metadata["node_prefix"] + name.replace("_", "-")
            out.append(Pinned((f.name, name), f"{config}.{name}", key))
    return tuple(out)


def plan_inputs(cfg: RunConfig) -> PlanInputs:
    """The plan inputs a run config states (the server's; a node's, built from its keys)."""
    return PlanInputs(
        cohort_size=cfg.training.clients_per_round,
        institutions=cfg.partition.num_clients,
        rounds=cfg.training.rounds,
        dp_sgd=cfg.privacy.dp.enabled,
        secure_aggregation=dataclasses.replace(cfg.secure_aggregation.params(), roster=None),
        distributed=cfg.privacy.distributed,
    )


def loss_is_summed(inputs: PlanInputs) -> bool:
    """Whether clients mask ``weight * train_loss`` beside their weight: not under either DP
    (the loss is computed without noise, so even its sum would sit outside the guarantee)."""
    return not (inputs.dp_sgd or inputs.distributed.enabled)
