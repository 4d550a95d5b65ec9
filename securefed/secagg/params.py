"""Protocol parameters, and the per-round plan every party derives from them on its own.

``SecAggParams`` mirrors the ``secure_aggregation`` config section. ``plan_round`` turns it
and the cohort size (clients invited to the round, known to every client from the run
config) into the graph kind, degree and threshold. Clients compute the plan themselves and
bind it into the session id: a server cannot lower the threshold or pick the graph.

Threshold rules (t counts share holders; a client holds one share of its own secrets):

- complete graph, ``threshold: auto``: the largest t that still survives the dropout budget,
  t = n - floor(dropout_budget * n), but never below the security minimum: t > c (curious
  server) or 2t > n + c (semi-malicious server, one that may report a live client as
  dropped to some and alive to others), with c = floor(corrupt_fraction * n) colluders.
  These are the rules of FCP's ``CheckFullGraphParameters`` with c rounded down, since
  colluders are whole clients.
- Harary graph: ``graph.harary_parameters`` (statistical security 2^-security_bits).
- ``graph: auto`` is complete up to ``COMPLETE_GRAPH_MAX_CLIENTS`` clients, or when no
  sparse graph is secure; Harary above.

Under a semi-malicious server every accepted plan has 2t > k + 1 (k + 1 share holders per
client): on the complete graph from 2t > n + c, on a Harary graph from the finder's rule
2t > k + corrupt neighbours with at least one of slack (see ``graph.harary_threshold``).
The consistency check and the masked-input rule (``minimum_partners``) rest on it.

Only a server assumed honest-but-curious may run without an identity roster:
``check_identities`` refuses ``adversary: semi_malicious`` without one, because the
consistency check that stops a lying server is signed with the roster's keys.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from securefed.errors import ConfigError
from securefed.secagg.graph import harary_parameters, harary_threshold
from securefed.secagg.quantize import QuantizationParams, encoded_length
from securefed.secagg.roster import Roster

COMPLETE_GRAPH_MAX_CLIENTS = 50
Adversary = Literal["curious", "semi_malicious"]


@dataclass(frozen=True)
class SecAggParams:
    """Secure-aggregation settings shared by the server and every client of a run."""

    threshold: int | Literal["auto"] = "auto"
    graph: Literal["auto", "complete", "harary"] = "auto"
    degree: int | Literal["auto"] = "auto"
    clip_norm: float = 10.0
    bits: int = 20
    security_bits: int = 40
    corrupt_fraction: float = 0.05
    dropout_budget: float = 0.33
    roster: str | Path | Roster | None = None
    identity_keys: str | Path | Mapping[int, bytes] | None = None  # simulation only
    adversary: Adversary = "semi_malicious"
    extras_bound: float = 1000.0

    @property
    def quantization(self) -> QuantizationParams:
        return QuantizationParams(self.clip_norm, self.bits, self.extras_bound)


@dataclass(frozen=True)
class RoundPlan:
    """Graph and threshold of one round, derived identically by every party."""

    graph: Literal["complete", "harary"]
    degree: int  # neighbours of each client, itself excluded
    threshold: int  # shares needed to recover a secret; also the minimum number of survivors
    cohort_size: int

    def to_bytes(self) -> bytes:
        kind = 0 if self.graph == "complete" else 1
        return struct.pack(">BIII", kind, self.degree, self.threshold, self.cohort_size)


def security_minimum(clients: int, corrupt_fraction: float, adversary: Adversary) -> int:
    """Smallest secure threshold for the complete graph on ``clients`` clients."""
    colluders = math.floor(corrupt_fraction * clients + 1e-12)
    if adversary == "semi_malicious":
        return max(2, (clients + colluders) // 2 + 1)
    return max(2, colluders + 1)


def minimum_partners(plan: RoundPlan, adversary: Adversary) -> int:
    """Fewest neighbours whose shares a client must hold before it uploads its masked input.

    Always t - 1 (with itself, t holders that masked with it), so the masks can be removed.
    Against a semi-malicious server also k + 2 - t. The counting argument: to unmask a
    victim u, a server needs t holders of u's self-mask seed b_u that saw u alive, and for
    every partner v in P (the neighbours whose shares u holds, so u masked with them) t
    holders of v's mask key that saw v dropped. With the consistency check each client signs
    one survivor set and releases only with t signatures on that set from its own
    neighbourhood, so a v in P that releases anything has t holders (in N[v], |N[v]| = k + 1)
    who signed a set containing v, disjoint from the t holders who signed one without v:
    impossible when 2t > k + 1. So the b_u holders must come from N[u] minus P, which has
    k + 1 - |P| members; |P| >= k + 2 - t leaves at most t - 1 of them.
    """
    t, k = plan.threshold, plan.degree
    if adversary == "curious":
        return t - 1
    return max(t - 1, k + 2 - t)


def check_identities(params: SecAggParams) -> None:
    """Refuse a run that assumes a lying server but has no identity roster to stop it."""
    if params.roster is None and params.adversary != "curious":
        raise ConfigError(
            "secure_aggregation.adversary",
            params.adversary,
            "'curious' when secure_aggregation.identity_roster is null; 'semi_malicious' "
            "needs an identity roster (the consistency check is signed with its keys)",
        )


def _complete_plan(n: int, params: SecAggParams) -> RoundPlan:
    minimum = security_minimum(n, params.corrupt_fraction, params.adversary)
    if params.threshold == "auto":
        threshold = max(minimum, n - math.floor(params.dropout_budget * n + 1e-12))
    else:
        threshold = params.threshold
    if not minimum <= threshold <= n:
        raise ConfigError(
            "secure_aggregation.threshold",
            params.threshold,
            f"'auto' or an integer in [{minimum}, {n}] for {n} clients on the complete graph "
            f"({params.adversary} server, corrupt_fraction {params.corrupt_fraction})",
        )
    return RoundPlan("complete", n - 1, threshold, n)


def _harary_plan(n: int, params: SecAggParams) -> RoundPlan:
    finder = {
        "corrupt_fraction": params.corrupt_fraction,
        "dropout_budget": params.dropout_budget,
        "security_bits": params.security_bits,
        "semi_malicious": params.adversary == "semi_malicious",
    }
    if params.degree == "auto":
        found = harary_parameters(n, **finder)
        if found is None:
            raise ConfigError(
                "secure_aggregation.graph",
                "harary",
                f"no Harary graph on {n} clients meets 2^-{params.security_bits} security "
                "with this corrupt_fraction and dropout_budget; use 'complete' or 'auto'",
            )
        degree, secure_threshold = found
    else:
        degree = params.degree
        if degree % 2 or not 2 <= degree <= n - 2:
            raise ConfigError(
                "secure_aggregation.degree", degree, f"'auto' or an even integer in [2, {n - 2}]"
            )
        found_t = harary_threshold(n, degree, **finder)
        if found_t is None:
            raise ConfigError(
                "secure_aggregation.degree",
                degree,
                f"too small for 2^-{params.security_bits} security on {n} clients",
            )
        secure_threshold = found_t
    threshold = secure_threshold if params.threshold == "auto" else params.threshold
    if not secure_threshold <= threshold <= degree + 1:
        raise ConfigError(
            "secure_aggregation.threshold",
            params.threshold,
            f"'auto' or an integer in [{secure_threshold}, {degree + 1}] for degree {degree}",
        )
    return RoundPlan("harary", degree, threshold, n)


def plan_round(cohort_size: int, params: SecAggParams) -> RoundPlan:
    """The graph and threshold for a round inviting ``cohort_size`` clients."""
    if cohort_size < 2:
        raise ConfigError("training.clients_per_round", cohort_size, "at least 2 with secagg")
    if params.graph == "complete":
        return _complete_plan(cohort_size, params)
    if params.graph == "harary":
        return _harary_plan(cohort_size, params)
    if cohort_size > COMPLETE_GRAPH_MAX_CLIENTS:
        try:
            return _harary_plan(cohort_size, params)
        except ConfigError:
            pass  # no secure sparse graph: fall back to the complete graph
    return _complete_plan(cohort_size, params)


@dataclass(frozen=True)
class RoundContext:
    """What a client knows about a round before any message arrives.

    ``global_adapter_hash`` is the hash of the global adapter this party holds: a client
    hashes the model it received, so a server that sends different models to different
    clients splits the session ids and the round fails instead of leaking.
    """

    round_index: int
    cohort_size: int
    params: SecAggParams
    global_adapter_hash: bytes
    vector_spec_hash: bytes
    dimension: int
    extras_count: int

    @property
    def vector_length(self) -> int:
        return encoded_length(self.dimension, self.extras_count)
