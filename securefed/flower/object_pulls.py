"""Flower's object pulls, asked again sooner when an object is not there yet.

A Flower 1.42 message travels as a tree of objects (the message, its ``RecordDict``, each
record, each array), each pulled with its own request, and a receiver learns of a message
before its sender has finished uploading those objects: the SuperNode creates the
ClientApp's task before it has pulled the message's objects from the SuperLink (so the
warm executor, polling every 0.1 s, acquires it first), and a node's reply is listed to the
ServerApp as soon as the node has pushed its message, before its objects. A pull that comes
that early finds the object unavailable, and Flower then waits a hard-coded 1 s
(``flwr.supercore.constant.PULL_INITIAL_BACKOFF``, the default of ``pull_objects`` and
``pull_and_inflate_object_from_tree``; doubling up to 10 s) before it asks again, although
the object arrives a few tens of milliseconds later. Measured on localhost
(``benchmarks/flower_round.py --trace``): 40 such waits in a two-round run with 3 nodes, on
the path of nearly every exchange, about 1 s each.

``install_pull_retry(seconds)`` makes ``seconds`` the first wait of every object pull of
this process (still doubling up to Flower's cap, with Flower's tries and time limits);
nothing else changes. The SuperNode (``supernode``), the warm executor (``warm_node``) and
the ServerApp (``server_app``) each call it at start. It refuses, as ``supernode`` does,
any flwr but ``flower_pin.PATCHED_FLWR_VERSION`` and a default that is no longer Flower's
1 s.
"""

from __future__ import annotations

from flwr.supercore.inflatable import inflatable_utils

from securefed.flower.flower_pin import FlowerPatchError, require_patched_flwr

PULL_RETRY_S = 0.05  # securefed's first wait before asking again for an unavailable object
FLOWER_PULL_RETRY_S = 1.0  # flwr 1.42's PULL_INITIAL_BACKOFF
_PULLS = (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree)


def install_pull_retry(seconds: float = PULL_RETRY_S) -> None:
    """Make ``seconds`` the first wait after an unavailable object in this process's pulls."""
    if not 0 < seconds <= FLOWER_PULL_RETRY_S:
        raise FlowerPatchError(f"pull retry must be in (0, 1] s, got {seconds}")
    require_patched_flwr("securefed shortens the object-pull retry of", "")
    for pull in _PULLS:
        defaults = pull.__kwdefaults__ or {}
        if defaults.get("initial_backoff") not in (FLOWER_PULL_RETRY_S, seconds):
            raise FlowerPatchError(
                f"{pull.__module__}.{pull.__name__} no longer waits Flower's "
                f"{FLOWER_PULL_RETRY_S} s before pulling an unavailable object again "
                f"(initial_backoff default: {defaults.get('initial_backoff')!r})"
            )
    for pull in _PULLS:
        pull.__kwdefaults__["initial_backoff"] = seconds
