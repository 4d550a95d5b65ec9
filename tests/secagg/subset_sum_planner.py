"""Can a lying server with colluders decode a sum over fewer clients than a survivor set?

The server picks a set S of clients whose masked inputs it adds up, and delivers each member w
of S the shares of only P_w (S minus w, the colluders and some others V), so that w's pair
masks cross the boundary of S only towards V. It decodes the sum over S if it collects, with
the colluders' shares, t shares of b_w for every honest w in S, and for every crossing pair
(w, v), w in S, v in P_w outside S, t shares of s_w or of s_v. Every other client masked with
all its neighbours.

``decodable`` searches EVERY assignment of survivor sets to the honest clients (each signs at
most one; any set containing itself, with t of its share holders and no neighbour it did not
mask with) by an integer program, with the client's rules at unmasking: it releases only for
the set it signed, with t signatures on that set from its share holders (colluders in the set
sign any set), b_v for v alive in its set, s_v for v it masked with and not in its set. The
number of candidate sets grows as 2^n, so this is for small cohorts (n <= 12).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import lil_matrix

Graph = Mapping[int, frozenset[int]]


def _views(graph: Graph, t: int, r: int, partners: frozenset[int]) -> list[frozenset[int]]:
    """Every survivor set client r would sign: itself in, t of N[r] in, no stranger."""
    others = sorted(partners | (frozenset(graph) - graph[r] - {r}))
    views = []
    for size in range(max(0, t - 1), len(others) + 1):  # t of N[r], itself one of them
        for chosen in itertools.combinations(others, size):
            view = frozenset(chosen) | {r}
            if len(view & (graph[r] | {r})) >= t:
                views.append(view)
    return views


def decodable(
    graph: Graph,
    t: int,
    sum_set: frozenset[int],
    deliveries: Mapping[int, frozenset[int]],
    colluders: frozenset[int],
) -> bool:
    """Whether some assignment of survivor sets lets the server decode the sum over
    ``sum_set``; ``deliveries`` maps each member of it to the neighbours it masked with."""
    ids = sorted(graph)
    honest = [w for w in ids if w not in colluders]
    masked = {w: deliveries.get(w, graph[w]) for w in ids}
    pairs = [(r, view) for r in honest for view in _views(graph, t, r, masked[r])]
    col = {pair: i for i, pair in enumerate(pairs)}  # x at i, released at len(pairs) + i
    members = sorted(sum_set - colluders)
    crossing = sorted(
        {(w, v) for w in members for v in masked[w] - sum_set - colluders}
    )  # need s_w or s_v
    outside = sorted({v for _, v in crossing})
    y = {w: 2 * len(pairs) + i for i, w in enumerate(members)}  # s_w collected
    z = {v: 2 * len(pairs) + len(members) + i for i, v in enumerate(outside)}  # s_v collected
    n_vars = 2 * len(pairs) + len(members) + len(outside)
    rows: list[tuple[dict[int, float], float, float]] = []

    for r in honest:  # one signed set per honest client
        rows.append(({col[p]: 1.0 for p in pairs if p[0] == r}, 0, 1))
    for (r, view), i in col.items():
        rows.append(({len(pairs) + i: 1.0, i: -1.0}, -np.inf, 0))
        row = {len(pairs) + i: float(t)}
        for q in graph[r] | {r}:
            if (q, view) in col:
                row[col[(q, view)]] = -1.0
        helpers = len(colluders & (graph[r] | {r}) & view)  # colluders sign any set
        rows.append((row, -np.inf, helpers))

    def shares(owner: int, kind: str) -> tuple[dict[int, float], int]:
        """-1 per release of a share of the owner's b (seed) or s (key); colluders' count."""
        row = {}
        for (r, view), i in col.items():
            holds = owner == r if kind == "seed" else False
            holds = holds or owner in masked[r]
            if not holds:
                continue
            if (kind == "seed" and owner in view) or (kind == "key" and owner not in view):
                row[len(pairs) + i] = -1.0
        held_by_colluders = sum(1 for q in colluders if owner in graph[q])
        return row, held_by_colluders

    for w in members:  # t shares of b_w
        row, free = shares(w, "seed")
        rows.append((row, -np.inf, free - t))
    for owner, var in (*y.items(), *z.items()):  # t shares of s if it is counted collected
        row, free = shares(owner, "key")
        rows.append(({**row, var: float(t)}, -np.inf, free))
    for w, v in crossing:
        rows.append(({y[w]: 1.0, z[v]: 1.0}, 1, np.inf))
    matrix = lil_matrix((len(rows), n_vars))
    for k, (row, _, _) in enumerate(rows):
        for c, value in row.items():
            matrix[k, c] = value
    result = milp(
        np.zeros(n_vars),
        constraints=LinearConstraint(
            matrix.tocsr(), [lo for _, lo, _ in rows], [hi for _, _, hi in rows]
        ),
        integrality=np.ones(n_vars),
        bounds=Bounds(np.zeros(n_vars), np.ones(n_vars)),
        options={"time_limit": 60.0},
    )
    if result.x is not None:
        return True
    if result.status != 2:  # 2: infeasible; anything else (a time limit) proves nothing
        raise TimeoutError(f"the integer program did not finish: {result.message}")
    return False
