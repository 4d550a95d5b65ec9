"""Who shares masks and secrets with whom: the complete graph, or a random Harary graph.

SecAgg+ (Bell et al., CCS 2020) replaces Bonawitz's complete graph by a k-regular graph: a
Harary graph H(n, k) (ring, each node joined to the k/2 nearest on either side) under a
random relabelling. ``harary_parameters`` chooses (k, t) the way Google's production finder
does (fcp/secagg/server/graph_parameter_finder.cc, ported here as an idea, not as code):

- security, 2^-security_bits split over two events: (a) the honest survivors stay connected
  (union bound over pairs of k/2-long runs of bad nodes on the ring), and (b) no client has
  t or more corrupt neighbours (hypergeometric tail, union bound over clients);
- correctness, 2^-20: every client keeps at least t surviving neighbours;
- a semi-malicious server (one that may lie about who dropped, helped by the c corrupt
  neighbours of event (b), who sign any number of survivor sets and hand over every share
  they hold) also needs 2t > k + 1 + c (``semi_malicious_minimum``; proof in ``params``).

The smallest even k that passes wins, with the smallest secure threshold: t = c + 1 against a
curious server, t = floor((k + 1 + c) / 2) + 1 against a semi-malicious one.
Tail probabilities are summed exactly from log-pmfs (FCP starts its sums at a Hoeffding
bound); all 26 (n, alpha, dropout, adversary) rows checked from FCP's own test table,
n = 10 .. 10^6, gave the same (k, t) under FCP's semi-malicious rule. That rule,
t = ceil((c + k - 1.25) / 2) + 1, allows 2t = k + 1 + c, which does not count the victim's
own share of b_u: with c colluders signing both halves of a split survivor set it unmasks
the victim (issue 26). Ours is one share stricter exactly where FCP's allows equality.

``degree`` counts neighbours other than the client itself; the k + 1 share holders of a
client are its neighbours and itself.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache

_SMALL = 1e-14  # FCP's guard against rounding alpha * n the insecure way
CORRECTNESS_BITS = 20

# Tests only: 1 makes ``semi_malicious_minimum`` one share short (2t = holders + colluders
# allowed), to show the collusion attack the rule stops. Not a config key and read by no
# config path; a test that sets it must clear the finder's caches (``clear_finder_caches``).
_TEST_ONLY_SHARES_SHORT = 0


def semi_malicious_minimum(holders: int, colluders: int) -> int:
    """Smallest t with 2t > holders + colluders: the victim's ``holders`` (k + 1 share
    holders, itself included) cannot be split into two honest groups that each reach t
    shares with the ``colluders`` among them (see ``params``)."""
    return (holders + colluders) // 2 + 1 - _TEST_ONLY_SHARES_SHORT


def clear_finder_caches() -> None:
    """Forget cached finder results (after a test changes ``_TEST_ONLY_SHARES_SHORT``)."""
    harary_threshold.cache_clear()
    harary_parameters.cache_clear()
    corrupt_neighbours_bound.cache_clear()


def _log_pmf(x: int, total: int, marked: int, drawn: int) -> float:
    """log P[X = x] for X ~ Hypergeometric(total, marked, drawn)."""
    lg = math.lgamma
    return (
        lg(marked + 1)
        - lg(x + 1)
        - lg(marked - x + 1)
        + lg(total - marked + 1)
        - lg(drawn - x + 1)
        - lg(total - marked - drawn + x + 1)
        - lg(total + 1)
        + lg(drawn + 1)
        + lg(total - drawn + 1)
    )


def _pmf(x: int, total: int, marked: int, drawn: int) -> float:
    """P[X = x], zero outside the support."""
    if not max(0, drawn - (total - marked)) <= x <= min(drawn, marked):
        return 0.0
    return math.exp(_log_pmf(x, total, marked, drawn))


def _min_upper_quantile(total: int, marked: int, drawn: int, q: float) -> int:
    """Smallest x with P[X > x] < q (tail summed from the top, so tiny q stays exact)."""
    upper = 0.0  # P[X > drawn]
    for x in range(drawn, 0, -1):
        upper += _pmf(x, total, marked, drawn)  # now P[X > x - 1]
        if upper >= q:
            return x
    return 0


def _max_lower_cut(total: int, marked: int, drawn: int, q: float) -> int:
    """Largest t with P[X <= t - 1] < q (tail summed from the bottom)."""
    lower = 0.0  # P[X <= -1]
    for t in range(drawn + 1):
        lower += _pmf(t, total, marked, drawn)  # now P[X <= t]
        if lower >= q:
            return t
    return drawn + 1


def _log_prob_disconnected(clients: int, degree: int, bad: int) -> float:
    if degree > bad:
        return -math.inf
    log_gap_pairs = math.log(clients) + math.log(clients - degree - 1) - math.log(2)
    lg = math.lgamma
    return (
        log_gap_pairs
        + lg(bad + 1)
        + lg(clients - degree + 1)
        - lg(clients + 1)
        - lg(bad - degree + 1)
    )


@lru_cache(maxsize=256)
def corrupt_neighbours_bound(
    clients: int, degree: int, *, corrupt_fraction: float, security_bits: int
) -> int:
    """c: the most corrupt clients among any client's ``degree`` neighbours, except with
    probability 2^-(security_bits + 1) (hypergeometric tail, union bound over clients)."""
    corrupt = math.floor((corrupt_fraction + _SMALL) * clients)
    q = 2.0 ** -(security_bits + 1) / clients
    return _min_upper_quantile(clients, corrupt, degree, q)


@lru_cache(maxsize=256)
def harary_threshold(
    clients: int,
    degree: int,
    *,
    corrupt_fraction: float,
    dropout_budget: float,
    security_bits: int,
    semi_malicious: bool,
) -> int | None:
    """The smallest secure threshold for a Harary graph of this degree, or None if none is."""
    per_event = security_bits + 1  # the security budget split evenly over two bad events
    corrupt = math.floor((corrupt_fraction + _SMALL) * clients)
    dropped = math.floor((dropout_budget + _SMALL) * clients)
    if _log_prob_disconnected(clients, degree, corrupt + dropped) >= -per_event * math.log(2):
        return None
    surviving = math.ceil((1 - dropout_budget - _SMALL) * clients)
    colluders = corrupt_neighbours_bound(
        clients, degree, corrupt_fraction=corrupt_fraction, security_bits=security_bits
    )
    # every client keeps at least t_live surviving neighbours, except with prob. 2^-20
    t_live = _max_lower_cut(clients, surviving, degree, 2.0**-CORRECTNESS_BITS / clients)
    threshold = colluders + 1
    if semi_malicious:
        threshold = semi_malicious_minimum(degree + 1, colluders)
    if threshold > t_live:
        return None
    return max(threshold, 2)


@lru_cache(maxsize=256)
def harary_parameters(
    clients: int,
    *,
    corrupt_fraction: float,
    dropout_budget: float,
    security_bits: int,
    semi_malicious: bool,
) -> tuple[int, int] | None:
    """(degree, threshold) of the sparsest secure Harary graph, or None if none exists."""
    for degree in range(2, clients - 1, 2):
        threshold = harary_threshold(
            clients,
            degree,
            corrupt_fraction=corrupt_fraction,
            dropout_budget=dropout_budget,
            security_bits=security_bits,
            semi_malicious=semi_malicious,
        )
        if threshold is not None:
            return degree, threshold
    return None


def _ring(participants: Sequence[int], seed: bytes) -> list[int]:
    """Participants in the order SHA-256(seed || id): the random relabelling of the ring."""
    ids = set(participants)
    return sorted(ids, key=lambda u: hashlib.sha256(seed + u.to_bytes(8, "big")).digest())


def neighbours_of(
    client: int, participants: Sequence[int], degree: int, seed: bytes
) -> frozenset[int]:
    """One participant's neighbours (itself excluded); see ``neighbours``."""
    ring = _ring(participants, seed)
    n, half = len(ring), degree // 2
    if degree >= n - 1:
        return frozenset(ring) - {client}
    i = ring.index(client)
    return frozenset(ring[(i + offset) % n] for offset in range(-half, half + 1) if offset)


def neighbours(participants: Sequence[int], degree: int, seed: bytes) -> dict[int, frozenset[int]]:
    """Each participant's neighbours (itself excluded) in a relabelled Harary graph.

    Participants sit on a ring ordered by SHA-256(seed || id) and are joined to the
    ``degree / 2`` nearest on each side. ``seed`` is derived from the session id, so every
    party computes the same graph and no single party chooses it. With
    ``degree >= len(participants) - 1`` this is the complete graph.
    """
    ring = _ring(participants, seed)
    n, half = len(ring), degree // 2
    if degree >= n - 1:
        everyone = frozenset(ring)
        return {u: everyone - {u} for u in ring}
    return {
        u: frozenset(ring[(i + offset) % n] for offset in range(-half, half + 1) if offset)
        for i, u in enumerate(ring)
    }
