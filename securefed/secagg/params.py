"""Protocol parameters, and the per-round plan every party derives from them on its own.

``SecAggParams`` mirrors the ``secure_aggregation`` config section. ``plan_round`` turns it
and the cohort size (clients invited to the round, known to every client from the run
config) into the graph kind, degree and threshold. Clients compute the plan themselves and
bind it into the session id: a server cannot lower the threshold or pick the graph.

Threshold rules (t counts share holders; a client holds one share of its own secrets; c is
the colluder bound: floor(corrupt_fraction * n) on the complete graph, the finder's bound on
corrupt neighbours on a Harary graph, exceeded with probability below 2^-security_bits):

- complete graph, ``threshold: auto``: the largest t that still survives the dropout budget,
  t = n - floor(dropout_budget * n), but never below the security minimum: t > c (curious
  server) or 2t > n + c (semi-malicious server).
- Harary graph: ``graph.harary_parameters``: t > c, or 2t > k + 1 + c.
- ``graph: auto`` is complete up to ``COMPLETE_GRAPH_MAX_CLIENTS`` clients, or when no
  sparse graph is secure; Harary above.

**The semi-malicious rule, 2t > k + 1 + c** (k + 1 = n on the complete graph). Claim: a
server with c colluders -- who sign any number of survivor sets and hand over every share
and secret they hold -- cannot collect t shares of a victim u's self-mask seed b_u and t
shares of its mask key s_u, whatever survivor sets and unmask requests it shows. Proof: the
shares of u lie with N[u], its k neighbours and u itself (k + 1 holders), c of them
colluders. An honest holder answers one unmask request, for the one set it signed, and
releases for u either its share of b_u (u alive) or of s_u (u dropped), never both; u itself
releases only its own share of b_u. So the honest holders releasing b_u (A, u included) and
those releasing s_u (D) are disjoint, |A| + |D| <= k + 1 - c, and the server holds
|A| + c shares of b_u and |D| + c of s_u. Both reach t only if 2t <= k + 1 + c, and the
bound is tight: any split with |A| + c >= t and |D| + c >= t is one a server can show.
Counting only the neighbours (2t > k + c) misses the victim's own share of b_u (issue 26:
FCP's rule allowed 2t = k + 1 + c, and c colluders signing both halves of a split survivor
set unmasked u at n = 60 and n = 100).

The same count in N[v] gives the consistency check's lemma: an honest v that releases
anything got t signatures from N[v] on a set containing v, and a server holding s_v got t
shares of it from N[v] released under sets without v; honest signers sign one set, so the
two groups are disjoint apart from the c colluders, and both reach t only if
2t <= k + 1 + c. Hence an honest client whose s_v the server holds released nothing.
``minimum_partners`` builds on this lemma.

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
from securefed.secagg.graph import (
    corrupt_neighbours_bound,
    harary_parameters,
    harary_threshold,
    semi_malicious_minimum,
)
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
    colluders: int  # c: corrupt share holders per client the threshold is secure against

    def to_bytes(self) -> bytes:
        kind = 0 if self.graph == "complete" else 1
        return struct.pack(
            ">BIIII", kind, self.degree, self.threshold, self.cohort_size, self.colluders
        )


def cohort_colluders(clients: int, corrupt_fraction: float) -> int:
    """floor(corrupt_fraction * n): the colluding clients the threat model allows in a cohort
    of n. It is c on the complete graph (every client holds a share of every other) and the
    colluders whose noise shares distributed DP does not count (``privacy.distributed``)."""
    return math.floor(corrupt_fraction * clients + 1e-12)


def security_minimum(clients: int, corrupt_fraction: float, adversary: Adversary) -> int:
    """Smallest secure threshold for the complete graph on ``clients`` clients."""
    colluders = cohort_colluders(clients, corrupt_fraction)
    if adversary == "semi_malicious":
        return max(2, semi_malicious_minimum(clients, colluders))
    return max(2, colluders + 1)


def check_plan_secure(plan: RoundPlan, adversary: Adversary) -> None:
    """Raise ``ConfigError`` unless the plan meets its adversary's threshold rule:
    t > c (curious) or 2t > k + 1 + c (semi-malicious), and t <= k + 1."""
    t, holders, c = plan.threshold, plan.degree + 1, plan.colluders
    minimum = max(2, c + 1 if adversary == "curious" else semi_malicious_minimum(holders, c))
    if not minimum <= t <= holders:
        raise ConfigError(
            "secure_aggregation.threshold",
            t,
            f"an integer in [{minimum}, {holders}] for k = {plan.degree} and c = {c} "
            f"colluders against a {adversary} server",
        )


def minimum_partners(plan: RoundPlan, adversary: Adversary) -> int:
    """Fewest neighbours whose shares a client must hold before it uploads its masked input.

    Always t - 1 (with itself, t holders that masked with it), so the masks can be removed.
    Against a semi-malicious server with c colluders also k + 2 + c - t. The counting
    argument: to unmask a victim u the server needs b_u and, for every partner v in P (the
    neighbours whose shares u holds, so u masked with them), s_u or s_v. It never holds both
    b_u and s_u (the rule 2t > k + 1 + c, module docstring), so it needs s_v for every honest
    v in P (a colluder hands over its own s_v), and by the module's lemma such a v released
    nothing: no share of b_u. The shares of b_u then come from the c colluders and from the
    honest holders outside P, at most k + 1 - c - (|P| - c) when all colluders sit in P:
    k + 1 + c - |P| in all, below t when |P| >= k + 2 + c - t. Since 2t > k + 1 + c this
    is at most t: on a Harary graph the finder keeps t live neighbours (2^-20 under the
    dropout budget); what it costs in dropouts is ``neighbour_dropouts_tolerated``.
    """
    t, k = plan.threshold, plan.degree
    if adversary == "curious":
        return t - 1
    return max(t - 1, k + 2 + plan.colluders - t)


def neighbour_dropouts_tolerated(plan: RoundPlan, adversary: Adversary) -> int:
    """How many of a client's k neighbours may drop before masked input with the client still
    uploading: k - ``minimum_partners``. Later, the round needs t survivors in every
    survivor's closed neighbourhood. On the complete graph this is the plan's dropout
    tolerance: n - 1 - minimum_partners clients, which is n - t except when the
    semi-malicious rule makes minimum_partners = t (then one fewer)."""
    return plan.degree - minimum_partners(plan, adversary)


def check_identities(params: SecAggParams) -> None:
    """Refuse a run that assumes a lying server but has no identity roster to stop it."""
    require_roster(params.adversary, has_roster=params.roster is not None)


def require_roster(adversary: Adversary, *, has_roster: bool) -> None:
    """``ConfigError`` for a semi-malicious server model without an identity roster."""
    if not has_roster and adversary != "curious":
        raise ConfigError(
            "secure_aggregation.adversary",
            adversary,
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
    return RoundPlan("complete", n - 1, threshold, n, cohort_colluders(n, params.corrupt_fraction))


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
    colluders = corrupt_neighbours_bound(
        n, degree, corrupt_fraction=params.corrupt_fraction, security_bits=params.security_bits
    )
    return RoundPlan("harary", degree, threshold, n, colluders)


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
