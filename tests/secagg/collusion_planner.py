"""The split survivor set of issue 26, planned without an integer program, for any cohort.

The server shows the victim u alive to the clients on one side of a cut of the Harary ring
(read back from the graph) and dropped to those on the other side; the colluders among u's
neighbours sign both sets and hand over their shares of b_u and s_u. The honest holders on
the alive side release shares of b_u, those on the dropped side shares of s_u; with s_u the
server strips every pair mask of u at once. ``plan_split_sweep`` tries every cut and keeps
the first where both secrets reach t shares (else the closest): fast enough for n = 1000,
where the integer program of ``split_view_planner.plan_signed`` is too large.
"""

from __future__ import annotations

from split_view_planner import Graph, Plan


def _releasers(graph: Graph, t: int, colluders, views) -> set[int]:
    """The honest clients whose checks pass: t of N[w] in its set and t of N[w] signed it
    (colluders sign every set and are in every set); no stranger in the set (no share is
    withheld in a sweep plan)."""
    released = set()
    for w, view in views.items():
        holders = graph[w] | {w}
        in_set = len(holders & view)
        signers = sum(1 for z in holders if z in colluders or views.get(z) == view)
        if in_set >= t and signers >= t:
            released.add(w)
    return released


def ring_order(graph: Graph, start: int) -> list[int]:
    """The Harary ring read back from the graph, from ``start``: each step goes to the
    unvisited neighbour sharing the most neighbours with the current client (ring distance
    1 shares the most). On the complete graph any order is a ring order."""
    order, seen = [start], {start}
    while len(order) < len(graph):
        current = order[-1]
        ahead = (graph[current] - seen) or (frozenset(graph) - seen)
        step = max(ahead, key=lambda v: (len(graph[v] & graph[current]), -v))
        order.append(step)
        seen.add(step)
    return order


def plan_split_sweep(graph: Graph, t: int, victim: int, colluders: frozenset[int]) -> Plan:
    """The split survivor set of issue 26 by a sweep, no integer program: on the ring read
    from the graph, the clients on one side of a cut are shown the victim dropped, all others
    the victim alive. Every cut is tried; the first where the released shares of b_u and of
    s_u, with the colluders', both reach t wins (else the one that comes closest)."""
    ids = sorted(graph)
    everyone = frozenset(ids)
    honest = everyone - colluders
    ring = ring_order(graph, victim)
    signed = {w: i if i <= len(ring) // 2 else i - len(ring) for i, w in enumerate(ring)}
    order = sorted(honest - {victim}, key=lambda w: (-signed[w], w))  # the dropped side first
    holders_of_u = graph[victim] | {victim}
    best: tuple[int, Plan] | None = None
    for cut in range(len(order) + 1):
        dropped_side = frozenset(order[:cut])
        if len(dropped_side & holders_of_u) + len(colluders & holders_of_u) < t:
            continue  # too few holders can release s_u yet
        views = {w: everyone - {victim} if w in dropped_side else everyone for w in honest}
        released = _releasers(graph, t, colluders, views)
        helpers = len(colluders & graph[victim])
        seed = len(released & holders_of_u - dropped_side) + helpers
        key = len(released & dropped_side & holders_of_u) + helpers
        score = min(seed, t) + min(key, t)
        if best is None or score > best[0]:
            best = (score, Plan(victim, graph[victim], views, score == 2 * t))
        if seed < t or score == 2 * t:
            break  # complete, or the alive side only shrinks from here
    return best[1] if best else Plan(victim, graph[victim], {}, False)
