"""What a node pins for itself: everything that shapes its rounds' plan, and its identity.

A server that could set a node's cohort size, threshold, graph, roster or noise could weaken
every protection in ``securefed.secagg`` (a 2-client round, say, where one colluder and the
released sum give the victim's update), so a node takes none of them from a server message.
Every field of ``securefed.plan_inputs.PlanInputs`` -- what the round planners read --
comes from the node's own node config (``flower-supernode --node-config``), under a key
derived from the field's name (``pinned_fields``), all optional::

    cohort-size             = 4                  # training.clients_per_round
    institutions            = 4                  # partition.num_clients
    rounds                  = 10                 # training.rounds
    dp-sgd                  = false              # privacy.dp.enabled
    secagg-threshold        = "auto"             # secure_aggregation.<field>, each of them
    secagg-graph            = "auto"
    secagg-degree           = "auto"
    secagg-clip-norm        = 10.0
    secagg-bits             = 20
    secagg-security-bits    = 40
    secagg-corrupt-fraction = 0.05
    secagg-dropout-budget   = 0.33
    secagg-adversary        = "semi_malicious"   # or "curious" (then no roster is needed)
    ddp-enabled             = true               # privacy.distributed.<field>, each of them
    ddp-mechanism           = "skellam"
    ddp-target-epsilon      = 8.0
    ddp-delta               = "auto"
    ddp-clip-norm           = 1.0
    ddp-modclip-probability = 0.0001
    roster                  = "/etc/securefed/roster.json"    # the pinned identity roster
    identity-keys           = "/etc/securefed/me.keys.json"   # this institution's private key

A key left out takes the value of securefed's embedded default config (the package the
node runs; what ``securefed simulate`` runs without a config), never the server's value;
the node's values are validated as a run config is, so a node config that could not plan a
round is refused at once, naming its key. The node plans every round from these values
(cohort size, threshold, graph, its noise share), not from the server's, and at ``join``
refuses the run, naming each key that differs, if the server's config states anything
else. ``pinned_node_config`` writes these keys for a given run config (what an operator who
agrees to that config pins). A node with identity keys needs its own pinned roster: it
never falls back to a roster the server names. Without a roster only
``secagg-adversary = "curious"`` is allowed (``secagg.params.check_identities``).

Entropy: the node's identity key is the institution's own (``identity-keys``, made with
``python -m securefed.secagg.roster`` from OS entropy); every per-round key, seed and share
coefficient comes from a 32-byte seed the node draws with ``os.urandom`` (``node_round``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securefed.config import RunConfig, validate
from securefed.config_yaml import default_config_path, read_yaml
from securefed.errors import ConfigError
from securefed.flower.node_round import Identity
from securefed.plan_inputs import PlanInputs, pinned_fields, plan_inputs
from securefed.secagg import SecAggParams
from securefed.secagg.roster import load_identity_keys, load_roster

PINNED = pinned_fields()
_SECTION_PREFIXES = ("secagg-", "ddp-")  # a misspelt key under these is an error


@dataclass(frozen=True)
class NodeSecurity:
    """The settings this node plans and runs its rounds with, whatever the server says."""

    inputs: PlanInputs  # every input of the round plan, from the node config
    identity: Identity
    roster_path: str | None

    def params(self) -> SecAggParams:
        """The protocol parameters, with the pinned roster (never the server's)."""
        return dataclasses.replace(self.inputs.secure_aggregation, roster=self.identity.roster)

    def record(self) -> dict[str, Any]:
        """What the node's own record states it used."""
        roster = None
        if self.roster_path is not None:
            roster = hashlib.sha256(Path(self.roster_path).read_bytes()).hexdigest()
        return {
            **{p.config_key: p.of(self.inputs) for p in PINNED},
            "identities": self.identity.roster is not None,
            "roster_sha256": roster,
            "source": "node-config",
        }


def node_security(node_config: dict, institution: int) -> NodeSecurity:
    """Read and check this node's pinned settings; ``ConfigError`` naming the node-config key."""
    inputs = _pinned_inputs(node_config)
    adversary = inputs.secure_aggregation.adversary
    roster_path = node_config.get("roster")
    keys_path = node_config.get("identity-keys")
    if keys_path is not None and roster_path is None:
        raise ConfigError(
            "node-config.roster",
            None,
            "the path of this node's pinned roster: it has identity-keys, and a node never "
            "takes its roster from the server",
        )
    if roster_path is None:
        if adversary != "curious":
            raise ConfigError(
                "node-config.secagg-adversary",
                adversary,
                "'curious' for a node without a roster; 'semi_malicious' needs roster and "
                "identity-keys in the node config",
            )
        return NodeSecurity(inputs, Identity(), None)
    if keys_path is None:
        raise ConfigError(
            "node-config.identity-keys", None, "this institution's key file, beside its roster"
        )
    keys = load_identity_keys(str(keys_path))
    if institution not in keys:
        raise ConfigError("node-config.identity-keys", str(keys_path), f"a key for {institution}")
    identity = Identity(keys[institution], load_roster(str(roster_path)))
    return NodeSecurity(inputs, identity, str(roster_path))


def _pinned_inputs(node_config: dict) -> PlanInputs:
    """The plan inputs stated by the node config's pinned keys (the rest as in securefed's
    embedded default config), validated as a run config; ``ConfigError`` naming the
    node-config key."""
    by_node_key = {p.node_key: p for p in PINNED}
    unknown = sorted(
        k for k in node_config if k.startswith(_SECTION_PREFIXES) and k not in by_node_key
    )
    if unknown:
        allowed = ", ".join(k for k in by_node_key if k.startswith(_SECTION_PREFIXES))
        raise ConfigError(f"node-config.{unknown[0]}", node_config[unknown[0]], f"one of {allowed}")
    raw = read_yaml(default_config_path())
    for key, p in by_node_key.items():
        if key in node_config:
            *parents, leaf = p.config_key.split(".")
            node = raw
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = node_config[key]
    try:
        return plan_inputs(validate(raw))
    except ConfigError as err:
        by_config_key = {p.config_key: p.node_key for p in PINNED}
        named = by_config_key.get(err.key)
        key = f"node-config.{named}" if named else f"node-config (as {err.key})"
        raise ConfigError(key, err.value, err.allowed) from None


def pinned_node_config(cfg: RunConfig) -> dict[str, Any]:
    """The node-config keys that pin a node to ``cfg``'s round plan (what an operator who
    agrees to run ``cfg`` sets; the localhost recipe and the tests use it)."""
    inputs = plan_inputs(cfg)
    settable = {p.config_key for p in PINNED} & _config_keys(cfg)
    return {p.node_key: p.of(inputs) for p in PINNED if p.config_key in settable}


def _config_keys(cfg: RunConfig) -> set[str]:
    """Every dotted key of a run config."""

    def walk(prefix: str, value: Any) -> set[str]:
        if not isinstance(value, dict):
            return {prefix}
        return set().union(*(walk(f"{prefix}.{k}" if prefix else k, v) for k, v in value.items()))

    return walk("", cfg.model_dump(mode="json"))


def disagreements(cfg: RunConfig, pinned: NodeSecurity) -> list[str]:
    """Each plan input the server's config states differently from this node's pin, as
    ``run-config key: server ..., node ... (node-config key)``."""
    sent = plan_inputs(cfg)
    out = [
        f"{p.config_key}: server {p.of(sent)!r}, node {p.of(pinned.inputs)!r} "
        f"(node-config {p.node_key})"
        for p in PINNED
        if p.of(sent) != p.of(pinned.inputs)
    ]
    if not cfg.secure_aggregation.enabled:
        out.append("secure_aggregation.enabled: server False, node True")
    return out
