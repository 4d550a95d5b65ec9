"""What a node pins for itself: its secure-aggregation settings and its identity.

A server that could set a node's threshold, graph or roster could weaken every protection in
``securefed.secagg``, so a node takes none of them from a server message. They come from its
own node config (``flower-supernode --node-config``), all optional::

    secagg-threshold        = "auto"             # as in the config's secure_aggregation section
    secagg-graph            = "auto"
    secagg-degree           = "auto"
    secagg-clip-norm        = 10.0
    secagg-bits             = 20
    secagg-security-bits    = 40
    secagg-corrupt-fraction = 0.05
    secagg-dropout-budget   = 0.33
    secagg-adversary        = "semi_malicious"   # or "curious" (then no roster is needed)
    roster                  = "/etc/securefed/roster.json"    # the pinned identity roster
    identity-keys           = "/etc/securefed/me.keys.json"   # this institution's private key
    ddp-enabled             = true               # institution-level DP (privacy.distributed)
    ddp-mechanism           = "skellam"
    ddp-target-epsilon      = 8.0
    ddp-delta               = "auto"
    ddp-clip-norm           = 1.0
    ddp-modclip-probability = 0.0001

The ``ddp-`` keys pin the node's institution-level DP: its noise share is calibrated from
them, so a server that could set them could shrink the noise that protects the institution.
A key left out takes securefed's own default (the package the node runs), never the
server's value. At ``join`` the node compares the run config the server sends with what it
pinned and refuses the run, saying which keys differ, if any does. A node with identity keys
needs its own pinned roster: it never falls back to a roster the server names. Without a
roster only ``secagg-adversary = "curious"`` is allowed (``secagg.params.check_identities``).

Entropy: the node's identity key is the institution's own (``identity-keys``, made with
``python -m securefed.secagg.roster`` from OS entropy); every per-round key, seed and share
coefficient comes from a 32-byte seed the node draws with ``os.urandom`` (``node_round``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from securefed.config import DistributedDPConfig, RunConfig, SecureAggregationConfig
from securefed.errors import ConfigError
from securefed.flower.node_round import Identity
from securefed.secagg import SecAggParams
from securefed.secagg.roster import load_identity_keys, load_roster

PINNED_FIELDS = (
    "threshold",
    "graph",
    "degree",
    "clip_norm",
    "bits",
    "security_bits",
    "corrupt_fraction",
    "dropout_budget",
)
DISTRIBUTED_FIELDS = tuple(DistributedDPConfig.model_fields)
ADVERSARIES = ("semi_malicious", "curious")
_PREFIX = "secagg-"
_DDP_PREFIX = "ddp-"


def _node_key(field: str, prefix: str = _PREFIX) -> str:
    return prefix + field.replace("_", "-")


@dataclass(frozen=True)
class NodeSecurity:
    """The settings this node runs secure aggregation with, whatever the server says."""

    section: SecureAggregationConfig  # the pinned secure_aggregation settings
    adversary: str
    identity: Identity
    roster_path: str | None
    distributed: DistributedDPConfig = DistributedDPConfig()  # the pinned privacy.distributed

    def params(self) -> SecAggParams:
        """The protocol parameters, with the pinned roster (never the server's)."""
        return SecAggParams(
            **{f: getattr(self.section, f) for f in PINNED_FIELDS},
            roster=self.identity.roster,
            adversary=self.adversary,  # type: ignore[arg-type]
        )

    def record(self) -> dict[str, Any]:
        """What the node's own record states it used."""
        roster = None
        if self.roster_path is not None:
            roster = hashlib.sha256(Path(self.roster_path).read_bytes()).hexdigest()
        return {
            **{f: getattr(self.section, f) for f in PINNED_FIELDS},
            "adversary": self.adversary,
            "identities": self.identity.roster is not None,
            "roster_sha256": roster,
            "distributed_dp": self.distributed.model_dump(),
            "source": "node-config",
        }


def node_security(node_config: dict, institution: int) -> NodeSecurity:
    """Read and check this node's pinned settings; ``ConfigError`` naming the node-config key."""
    section = _pinned(node_config, SecureAggregationConfig, PINNED_FIELDS, _PREFIX, "adversary")
    distributed = _pinned(node_config, DistributedDPConfig, DISTRIBUTED_FIELDS, _DDP_PREFIX)
    adversary = str(node_config.get("secagg-adversary", "semi_malicious"))
    if adversary not in ADVERSARIES:
        raise ConfigError("node-config.secagg-adversary", adversary, f"one of {ADVERSARIES}")
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
        return NodeSecurity(section, adversary, Identity(), None, distributed)
    if keys_path is None:
        raise ConfigError(
            "node-config.identity-keys", None, "this institution's key file, beside its roster"
        )
    keys = load_identity_keys(str(keys_path))
    if institution not in keys:
        raise ConfigError("node-config.identity-keys", str(keys_path), f"a key for {institution}")
    roster = load_roster(str(roster_path))
    identity = Identity(keys[institution], roster)
    return NodeSecurity(section, adversary, identity, str(roster_path), distributed)


def _pinned(node_config: dict, section_type, fields: tuple[str, ...], prefix: str, *other: str):
    """One config section from the node config's ``prefix`` keys (the rest at their defaults);
    ``ConfigError`` naming the node-config key that is unknown or invalid."""
    known = {_node_key(f, prefix): f for f in fields}
    allowed = [*known, *(_node_key(o, prefix) for o in other)]
    unknown = sorted(k for k in node_config if k.startswith(prefix) and k not in allowed)
    if unknown:
        raise ConfigError(
            f"node-config.{unknown[0]}", node_config[unknown[0]], f"one of {', '.join(allowed)}"
        )
    values = {field: node_config[key] for key, field in known.items() if key in node_config}
    try:
        return section_type(**values)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else fields[0]
        raise ConfigError(
            f"node-config.{_node_key(field, prefix)}", first.get("input"), first["msg"]
        ) from None


def disagreements(cfg: RunConfig, pinned: NodeSecurity) -> list[str]:
    """The server's secure_aggregation and privacy.distributed settings that differ from what
    this node pinned."""
    sent, ddp = cfg.secure_aggregation, cfg.privacy.distributed
    out = [
        f"{key}.{f}: server {getattr(server, f)!r}, node {getattr(node, f)!r}"
        for key, server, node, fields in (
            ("secure_aggregation", sent, pinned.section, PINNED_FIELDS),
            ("privacy.distributed", ddp, pinned.distributed, DISTRIBUTED_FIELDS),
        )
        for f in fields
        if getattr(server, f) != getattr(node, f)
    ]
    server_adversary = getattr(sent, "adversary", None)
    if server_adversary is not None and server_adversary != pinned.adversary:
        out.append(
            f"secure_aggregation.adversary: server {server_adversary!r}, node {pinned.adversary!r}"
        )
    if not sent.enabled:
        out.append("secure_aggregation.enabled: server False, node True")
    return out
