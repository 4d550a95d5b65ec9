"""One message exchange: send to some nodes, collect the replies that arrive before a deadline.

``Grid.send_and_receive`` polls the SuperLink every 3 s; a secure-aggregation round is four
exchanges in a row, so this polls at ``poll_s`` instead (the SuperLink is local to the
ServerApp), and asks again at once after a pull that brought replies: the nodes answer a
stage at about the same time, and pulling each reply's objects takes the ServerApp tens of
milliseconds a reply, in which the next replies often arrive (at most one more pull per
reply; deploy/README.md, "The SuperNode's polls"). A node that has not replied by the
deadline, or that replied with a Flower error (its ClientApp raised, or it was
unreachable), is simply absent from the result: for the protocol that is a dropout at this
stage.

``await_online`` runs before a round's first exchange: a node that is restarting (a supervisor
brings a killed SuperNode back once the SuperLink has marked it offline) is given a bounded
wait to come back instead of being dropped at once. With few institutions one dropout before
key sharing can abort the round for everyone (a client uploads only when it holds enough
neighbours' shares), so a short wait at the round's start saves the whole round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid


@dataclass(frozen=True)
class Exchange:
    """Replies by node id, and the nodes that failed (error reply) or timed out."""

    replies: dict[int, Message]
    failed: dict[int, str]
    timed_out: tuple[int, ...]
    wall_s: float


def exchange(
    grid: Grid,
    message_type: str,
    bodies: dict[int, RecordDict],
    *,
    group_id: str,
    timeout_s: float,
    poll_s: float = 0.2,
) -> Exchange:
    """Send ``bodies[node]`` to each node; wait up to ``timeout_s`` for every reply."""
    started = time.perf_counter()
    messages = [
        Message(body, dst_node_id=node, message_type=message_type, group_id=group_id)
        for node, body in bodies.items()
    ]
    pushed = list(grid.push_messages(messages))  # same order as ``messages``; None if refused
    if len(pushed) != len(messages):  # the SuperLink refused the whole batch (too large)
        pushed = [None] * len(messages)
    node_of = {mid: node for mid, node in zip(pushed, bodies, strict=True) if mid}
    pending = set(node_of)
    replies: dict[int, Message] = {}
    failed: dict[int, str] = {}
    deadline = started + timeout_s
    while pending:
        arrived = 0
        for reply in grid.pull_messages(sorted(pending)):
            mid = reply.metadata.reply_to_message_id
            if mid not in pending:
                continue
            arrived += 1
            pending.discard(mid)
            node = node_of[mid]
            if reply.has_error():
                failed[node] = reply.error.reason
            else:
                replies[node] = reply
        if not pending or time.perf_counter() >= deadline:
            break
        if not arrived:
            time.sleep(poll_s)
    unsent = [node for node in bodies if node not in node_of.values()]
    failed.update({node: "could not be pushed to the SuperLink" for node in unsent})
    timed_out = tuple(sorted(node_of[mid] for mid in pending))
    return Exchange(replies, failed, timed_out, time.perf_counter() - started)


def await_online(grid: Grid, node_ids: list[int], *, timeout_s: float, poll_s: float) -> set[int]:
    """Wait up to ``timeout_s`` until every node in ``node_ids`` is online (the SuperLink lists
    it in ``Grid.get_node_ids``, which leaves out nodes marked offline); those still offline."""
    deadline = time.perf_counter() + timeout_s
    while True:
        offline = set(node_ids) - set(grid.get_node_ids())
        if not offline or time.perf_counter() >= deadline:
            return offline
        time.sleep(poll_s)
