"""A planning adversary for the split-view attack on one victim, and the server that runs it.

It may be helped by colluders (issue 26): clients whose identity keys and held shares the
server has, so they sign any number of survivor sets and hand over every share they hold
(and their own mask keys). They are never shown a view; every honest client counts their
signatures on whatever set it signed.

The attack (issue 11): the server delivers to the victim u the sealed shares of only a subset
P of its neighbours, so u masks with P alone. To unmask u's upload y_u it then needs u's
self-mask seed b_u (t holders that saw u alive) and, for every v in P, v's mask key s_v
(t holders of v's shares that saw v dropped). It shows each client its own view, chosen so
that every client's checks pass.

Two planners, one per client behaviour:

- ``plan_lists`` (the consistency check switched off: a view is an (alive, dropped) pair per
  client): a max-flow assigns each v in P to t of its holders, each holder w declaring at most
  |its masked-with peers| + 1 - t peers dropped (its live-holder check).
- ``plan_signed`` (the check on: a view is a survivor set the client signs, and a client
  releases only if t of its share holders signed the very same set): an integer program over
  which set each client is shown, from a family of views (everyone alive; P dropped; one
  member of P dropped; each also with the victim's withheld neighbours dropped), maximising how
  many of the t shares of each needed secret the server collects. It returns its best plan
  whether or not it is complete, so a test can force the best attempt through.

``SplitViewServer`` plays a round with real ``SecAggClient`` objects: honest until the
deliveries, then the selective delivery and the planned views, and finally the recovery of
x_u from what the clients released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix, lil_matrix
from scipy.sparse.csgraph import maximum_flow
from secagg_harness import ManualRound

from securefed.errors import ProtocolAbort
from securefed.secagg import crypto, shamir
from securefed.secagg.consistency import SurvivorSet, survivor_statement
from securefed.secagg.masking import apply_masks
from securefed.secagg.quantize import decode_sum
from securefed.secagg.session import mask_sign, pair_mask_key, seed_commitment, self_mask_key
from securefed.secagg.unmasking import UnmaskRequest

Graph = Mapping[int, frozenset[int]]


@dataclass(frozen=True)
class Plan:
    """Who the victim hears from, the survivor set shown to each client, and whether the
    planner expects the server to collect t shares of every secret it needs."""

    victim: int
    partners: frozenset[int]
    views: dict[int, frozenset[int]]  # client -> alive list / survivor set it is shown
    complete: bool


def masked_with(graph: Graph, victim: int, partners: frozenset[int], w: int) -> frozenset[int]:
    """The peers client w masks with: the victim only P, everyone else all neighbours."""
    return partners if w == victim else graph[w]


def choose_partners(
    graph: Graph, victim: int, count: int, colluders: frozenset[int] = frozenset()
) -> frozenset[int]:
    """The ``count`` neighbours of the victim, colluders first (their keys are free), then
    those with the most holders outside N[victim] (the easiest to have declared dropped by
    many); ties by id."""
    near = graph[victim] | {victim}
    ranked = sorted(graph[victim], key=lambda v: (v not in colluders, -len(graph[v] - near), v))
    return frozenset(ranked[:count])


def choose_colluders(graph: Graph, victim: int, count: int) -> frozenset[int]:
    """``count`` of the victim's neighbours (colluders help only inside N[victim]), those
    sharing the most neighbours with it first: their signatures count for the most of its
    holders. Ties by id."""
    near = graph[victim]
    return frozenset(sorted(near, key=lambda z: (-len(graph[z] & near), z))[:count])


# -- consistency check off: independent (alive, dropped) lists per client -----------------------


def plan_lists(graph: Graph, t: int, victim: int, partners: frozenset[int]) -> Plan:
    """Max-flow: each v in P must be declared dropped to t of its holders; a holder w may
    declare at most |masked-with(w)| + 1 - t peers dropped; the victim stays alive to all."""
    ids = sorted(graph)
    p_list = sorted(partners)
    index = {w: 2 + len(p_list) + i for i, w in enumerate(ids)}
    size = 2 + len(p_list) + len(ids)
    capacity = lil_matrix((size, size), dtype=np.int32)
    for i, v in enumerate(p_list):
        capacity[0, 2 + i] = t
        for w in graph[v]:
            capacity[2 + i, index[w]] = 1
    for w in ids:
        spare = len(masked_with(graph, victim, partners, w)) + 1 - t
        if spare > 0:
            capacity[index[w], 1] = spare
    flow = maximum_flow(csr_matrix(capacity), 0, 1).flow.tocsr()
    dropped: dict[int, set[int]] = {w: set() for w in ids}
    for i, v in enumerate(p_list):
        row = flow.getrow(2 + i)
        for col, amount in zip(row.indices, row.data, strict=True):
            if amount > 0:
                dropped[ids[col - 2 - len(p_list)]].add(v)
    withheld = graph[victim] - partners
    views = {
        w: frozenset(ids) - dropped[w] - (withheld if w == victim else frozenset()) for w in ids
    }
    complete = all(sum(v in dropped[w] for w in graph[v]) >= t for v in p_list)
    return Plan(victim, partners, views, complete)


# -- consistency check on: one signed survivor set per client ----------------------------------


def _view_family(
    graph: Graph, victim: int, partners: frozenset[int], honest: frozenset[int], via: str
) -> list[frozenset[int]]:
    withheld = graph[victim] - partners
    bases = [frozenset(), withheld]
    if via == "victim_key":
        drops = [frozenset(), frozenset({victim})]
    else:
        needed = partners & honest
        drops = [frozenset(), needed, *(frozenset({v}) for v in sorted(needed))]
    return list(dict.fromkeys(base | d for base in bases for d in drops))


def plan_signed(
    graph: Graph,
    t: int,
    victim: int,
    partners: frozenset[int],
    time_limit_s: float = 30.0,
    *,
    colluders: frozenset[int] = frozenset(),
    via: str = "partner_keys",
) -> Plan:
    """Integer program over which survivor set (a family of 'dropped' sets D) each honest
    client signs. x[w, D]: w is shown ids - D; r[w, D]: w releases (t of N[w] signed ids - D,
    the colluders among them signing every set). Maximise the collected shares, each secret
    counted up to t, the colluders' shares included; among the best, have every client that
    signs also release (a client that signs and then aborts is a trace of the attack)."""
    ids = sorted(graph)
    honest = frozenset(ids) - colluders
    family = _view_family(graph, victim, partners, honest, via)
    withheld = graph[victim] - partners
    holders = {w: graph[w] | {w} for w in ids}
    pairs = [
        (w, d)
        for w in sorted(honest)
        for d in family
        if w not in d
        and len(holders[w] - d) >= t
        and not (holders[w] - d) & (graph[w] - masked_with(graph, victim, partners, w))
        and (w != victim or withheld <= d)
    ]
    n_pairs = len(pairs)
    col = {pair: i for i, pair in enumerate(pairs)}  # x at i, r at n_pairs + i
    if via == "victim_key":
        secrets = [("seed", victim), ("key", victim)]
    else:
        secrets = [("seed", victim)] + [("key", v) for v in sorted(partners & honest)]
    n_vars = 2 * n_pairs + len(secrets)  # then one coverage variable per secret
    rows: list[dict[int, float]] = []
    lower: list[float] = []
    upper: list[float] = []

    def add(row: dict[int, float], lo: float, hi: float) -> None:
        rows.append(row)
        lower.append(lo)
        upper.append(hi)

    for w in sorted(honest):  # each honest client signs at most one set
        add({col[(w, d)]: 1.0 for d in family if (w, d) in col}, 0, 1)
    for (w, d), i in col.items():
        add({n_pairs + i: 1.0, i: -1.0}, -np.inf, 0)  # releases only what it signed
        row = {n_pairs + i: float(t)}
        for z in holders[w]:
            if (z, d) in col:
                row[col[(z, d)]] = row.get(col[(z, d)], 0.0) - 1.0
        add(row, -np.inf, len(holders[w] & colluders))  # t of its holders signed the set
    for s, (kind, owner) in enumerate(secrets):
        row = {2 * n_pairs + s: 1.0}
        for (w, d), i in col.items():
            if w not in holders[owner]:
                continue
            useful = owner not in d if kind == "seed" else owner in d and w != owner
            if useful:
                row[n_pairs + i] = -1.0
        add(row, -np.inf, len(graph[owner] & colluders))  # coverage <= releasing holders
    matrix = lil_matrix((len(rows), n_vars))
    for r, row in enumerate(rows):
        for c, value in row.items():
            matrix[r, c] = value
    cost = np.zeros(n_vars)
    cost[2 * n_pairs :] = -1.0  # maximise coverage,
    cost[n_pairs : 2 * n_pairs] = -1.0 / (2 * n_pairs + 1)  # then the clients that release
    cost[:n_pairs] = 1.0 / (2 * n_pairs + 1)  # and sign only where that helps
    integrality = np.concatenate([np.ones(2 * n_pairs), np.zeros(len(secrets))])
    upper_bounds = np.concatenate([np.ones(2 * n_pairs), np.full(len(secrets), float(t))])
    result = milp(
        cost,
        constraints=LinearConstraint(matrix.tocsr(), lower, upper),
        integrality=integrality,
        bounds=Bounds(np.zeros(n_vars), upper_bounds),
        options={"time_limit": time_limit_s},
    )
    if result.x is None:
        return Plan(victim, partners, {}, False)
    chosen = {w: d for (w, d), i in col.items() if result.x[i] > 0.5}
    views = {w: frozenset(ids) - d for w, d in chosen.items()}
    complete = bool(result.x[2 * n_pairs :].sum() >= t * len(secrets) - 1e-6)
    return Plan(victim, partners, views, complete)


# -- the server that runs a plan against real clients ------------------------------------------


@dataclass
class AttackOutcome:
    responders: set[int]  # clients that released shares
    refused: set[int]  # clients that aborted at signing or unmasking
    seed_shares: int  # shares of b_u collected (the colluders' included)
    key_shares: dict[int, int]  # v -> shares of s_v collected (the victim's own s_u too)
    recovered: np.ndarray | None  # the decoded victim update (delta, then extras), or None
    recovered_encoded: np.ndarray | None = None  # the victim's encoded input (uint32), or None


class SplitViewServer:
    """Runs the honest first two stages, the selective delivery, and then a plan.

    ``colluders`` (with ``identity_keys``, which the server then holds) sign whatever set a
    plan needs and hand over the shares they hold and their own mask keys."""

    def __init__(
        self,
        manual: ManualRound,
        inputs: Mapping[int, np.ndarray],
        colluders: frozenset[int] = frozenset(),
        identity_keys: Mapping[int, bytes] | None = None,
    ) -> None:
        self.manual, self.inputs = manual, inputs
        self.colluders = colluders
        self.identity_keys = identity_keys or {}
        self.directory = manual.advertise()
        self.state = manual.server.state
        self.graph: Graph = self.state.graph
        self.t = self.state.plan.threshold

    def deliver(self, victim: int, partners: frozenset[int]) -> None:
        """Share keys honestly; deliver the victim only P's shares; everyone masks."""
        deliveries = self.manual.share(self.directory)
        clients = self.manual.clients
        # a colluder keeps its own mask key (an honest client forgets it once it has masked)
        self.colluder_keys = {z: clients[z].state.mask_private for z in self.colluders}
        own = deliveries[victim]
        kept = tuple((v, c) for v, c in own.ciphertexts if v in partners)
        deliveries[victim] = type(own)(own.receiver, own.session_id, kept)
        self.victim, self.partners = victim, partners
        self.manual.mask(deliveries, self.inputs)

    def _signatures(self, w: int, view: frozenset[int], signed) -> tuple[tuple[int, bytes], ...]:
        """Every signature on ``view`` from w's holders: the honest signers of that set and
        the colluders, who sign it on demand."""
        holders = self.graph[w] | {w}
        statement = survivor_statement(self.state.session_id, tuple(sorted(view)))
        forged = {z: crypto.sign(self.identity_keys[z], statement) for z in self.colluders}
        honest = {z: sig for z, (other, sig) in signed.items() if other == view}
        return tuple(sorted((z, sig) for z, sig in {**honest, **forged}.items() if z in holders))

    def run(self, plan: Plan, *, quiet: bool = False) -> AttackOutcome:
        """Show each honest client its view, forward every matching signature from its
        holders, send the unmask requests, and try to strip the victim's masks. ``quiet``:
        ask only the signers that have t signatures (the others would abort, a trace; to
        them the round just ends)."""
        sid = self.state.session_id
        clients = self.manual.clients
        refused: set[int] = set()
        signed: dict[int, tuple[frozenset[int], bytes]] = {}
        for w, view in sorted(plan.views.items()):
            if w in self.colluders:
                continue
            try:
                msg = clients[w].sign_survivors(SurvivorSet(sid, tuple(sorted(view))))
            except ProtocolAbort:
                refused.add(w)
                continue
            signed[w] = (view, msg.signature)
        responses = {}
        for w, (view, _) in signed.items():
            signatures = self._signatures(w, view, signed)
            if quiet and len(signatures) < self.t:
                continue
            peers = masked_with(self.graph, self.victim, self.partners, w)
            request = UnmaskRequest(
                sid, tuple(sorted(view)), tuple(sorted(peers - view)), signatures
            )
            try:
                responses[w] = clients[w].unmask(request)
            except ProtocolAbort:
                refused.add(w)
        return self._recover(responses, refused)

    def _collected(self, responses, kind: str, owner: int) -> dict[int, bytes]:
        """Shares of one secret of ``owner``: released ones, and every colluder's."""
        field = "self_seed_shares" if kind == "seed" else "mask_key_shares"
        shares = {
            w: dict(getattr(r, field))[owner]
            for w, r in responses.items()
            if owner in dict(getattr(r, field))
        }
        for z in self.colluders:
            held = self.manual.clients[z].state.held.get(owner)
            if held is not None:
                shares[z] = held.self_seed if kind == "seed" else held.mask_key
        return shares

    def _mask_key(self, responses, v: int) -> bytes | None:
        """s_v: a colluder's own, or rebuilt from t shares checked against its public key."""
        if v in self.colluders:
            return self.colluder_keys[v]
        pk_v = self.state.advertisements[v].mask_public
        shares = self._collected(responses, "key", v)
        return shamir.recover(shares, self.t, lambda s: crypto.x25519_public_key(s) == pk_v)

    def _recover(self, responses, refused) -> AttackOutcome:
        u, sid, t = self.victim, self.state.session_id, self.t
        seed_shares = self._collected(responses, "seed", u)
        owners = [u, *sorted(self.partners - self.colluders)]
        outcome = AttackOutcome(
            set(responses),
            refused,
            len(seed_shares),
            {v: len(self._collected(responses, "key", v)) for v in owners},
            None,
        )
        commitment = self.state.share_messages[u].seed_commitment
        seed = shamir.recover(seed_shares, t, lambda s: seed_commitment(sid, u, s) == commitment)
        if seed is None:
            return outcome
        masks = [(self_mask_key(sid, seed, u), -1)]
        pk_u = self.state.advertisements[u].mask_public
        s_u = self._mask_key(responses, u)
        for v in sorted(self.partners):
            pk_v = self.state.advertisements[v].mask_public
            if s_u is not None:  # the victim's own key removes every pair mask
                key = pair_mask_key(sid, crypto.KeyAgreement(s_u), pk_v, u, v)
            else:
                s_v = self._mask_key(responses, v)
                if s_v is None:
                    return outcome
                key = pair_mask_key(sid, crypto.KeyAgreement(s_v), pk_u, v, u)
            masks.append((key, -mask_sign(u, v)))
        y = self.manual.masked[u].copy()
        apply_masks(y, masks)
        context = self.state.context
        decoded = decode_sum(y, context.dimension, 1, context.params.quantization)
        outcome.recovered = np.concatenate([decoded.delta_sum, decoded.extras_sum])
        outcome.recovered_encoded = y
        return outcome
