"""Flower's own SuperNode, with its three fixed waits shortened (the idle one quicker still for
a moment after each reply).

Flower 1.42's SuperNode loop (``flwr.supernode.start_client_internal``) pulls a message
from the SuperLink and, when there is none, sleeps a hard-coded 3 s before pulling again;
having pulled one, it looks for the ClientApp's reply every 0.5 s, and then for each of the
reply's objects (which its ClientApp pushes after the reply itself) every 0.5 s. No flag,
environment variable or newer release changes any of them (deploy/README.md, "The
SuperNode's polls"). A securefed round is five exchanges, and a node pulls again right
after it pushes a reply, before the server has sent the next stage: every exchange waited
up to 3 s for nothing and 0.5-1 s for a reply ready in a tenth of that. Run instead::

    python -m securefed.flower.supernode --idle-poll 0.2 --reply-poll 0.05 \
        --busy-poll 0.05 --busy-window 2 <flower-supernode args>

which is ``flower-supernode`` with those three sleeps' arguments replaced (``--reply-poll``
for both waits on the ClientApp; for the idle one ``--busy-poll`` within ``--busy-window``
seconds of the node's last reply, when the next stage's message is due, else
``--idle-poll``: ``busy_poll``) and nothing else: the installed module's source is parsed,
each sleep is found (``FlowerSleep``: the function, the condition it sits under, its
seconds; exactly one match each, else this refuses), its argument replaced, and the two
functions compiled back into Flower's own module, where ``flower_supernode`` calls them.
Every other line (connection, node authentication, heartbeats, the Runtime API) is
Flower's, but for the first retry of an object pull (``object_pulls``). It refuses any flwr
but the version it was written against (``flower_pin.PATCHED_FLWR_VERSION``), so an upgrade
is a conscious step: ``tests/flower/test_supernode_poll.py`` fails when the patch no longer
applies.

The cost: an idle node sends ``1 / idle-poll`` pull requests a second to the SuperLink, and
each reply at most ``busy-window / busy-poll`` more; the reply poll reads the node's own
in-memory state.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import inspect
import sys
from dataclasses import dataclass

from securefed.errors import ConfigError
from securefed.flower.busy_poll import (
    BUSY_POLL_S,
    BUSY_WINDOW_S,
    BusyPoll,
    add_busy_arguments,
    busy_seconds,
)
from securefed.flower.flower_pin import FlowerPatchError, require_patched_flwr
from securefed.flower.object_pulls import install_pull_retry

IDLE_POLL_S = 0.2  # securefed's default: 5 pulls a second from an idle node
REPLY_POLL_S = 0.05  # securefed's default: how often the node looks for its ClientApp's reply
_PULL_INTERVAL = "_securefed_pull_interval"  # the name the idle sleep calls in Flower's module
_LOOP_MODULE = "flwr.supernode.start_client_internal"
_CLI_MODULE = "flwr.supernode.cli.flower_supernode"


@dataclass(frozen=True)
class FlowerSleep:
    """One ``time.sleep(seconds)`` of Flower's SuperNode loop, directly under the ``if`` or
    ``while`` whose condition reads ``guard``, in the module-level function ``function``."""

    function: str
    guard: str
    seconds: float


IDLE_SLEEP = FlowerSleep("start_client_internal", "run_id is None", 3)  # pulled no message
REPLY_SLEEP = FlowerSleep(  # the SuperNode waits for its ClientApp's reply to push it
    "_push_messages", "not (reply_messages := state.get_messages_legacy(is_reply=True))", 0.5
)
OBJECT_SLEEP = FlowerSleep(  # ... and, having it, for each of its objects (pushed after it)
    "_push_messages", "(content := object_store.get(tree.object_id)) == b''", 0.5
)


def _sleep_call(statement: ast.stmt, seconds: float) -> ast.Call | None:
    """``statement``'s call if it is ``time.sleep(seconds)``."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    if (
        isinstance(call, ast.Call)
        and ast.unparse(call.func) == "time.sleep"
        and len(call.args) == 1
        and not call.keywords
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value == seconds
    ):
        return call
    return None


def patch_sleeps(module_source: str, new_seconds: dict[FlowerSleep, float | str]) -> ast.Module:
    """The functions of ``module_source`` that hold the given sleeps, each sleep's argument
    replaced by the given seconds or, for a name, by a call of that module-level function
    (no arguments; it returns the seconds). Raises ``FlowerPatchError`` unless each function
    is defined once at module level, with exactly one statement under its guard and exactly
    one such sleep directly in that statement's body."""
    functions = {}
    for node in ast.parse(module_source).body:
        if isinstance(node, ast.FunctionDef) and node.name in {s.function for s in new_seconds}:
            if node.name in functions:
                raise FlowerPatchError(f"{_LOOP_MODULE} defines {node.name}() twice")
            functions[node.name] = node
    for sleep, seconds in new_seconds.items():
        where = f"{_LOOP_MODULE}.{sleep.function}"
        if sleep.function not in functions:
            raise FlowerPatchError(f"{where} no longer exists")
        guarded = [
            node
            for node in ast.walk(functions[sleep.function])
            if isinstance(node, ast.If | ast.While) and ast.unparse(node.test) == sleep.guard
        ]
        calls = [
            call
            for node in guarded
            for statement in node.body
            if (call := _sleep_call(statement, sleep.seconds)) is not None
        ]
        if len(guarded) != 1 or len(calls) != 1:
            raise FlowerPatchError(
                f"{where} no longer has the one time.sleep({sleep.seconds}) under "
                f"'{sleep.guard}' that securefed's SuperNode shortens (found {len(guarded)} "
                f"such conditions, {len(calls)} such sleeps under them)"
            )
        if isinstance(seconds, str):
            argument = ast.Call(func=ast.Name(id=seconds, ctx=ast.Load()), args=[], keywords=[])
        else:
            argument = ast.Constant(seconds)
        calls[0].args[0] = ast.fix_missing_locations(ast.copy_location(argument, calls[0]))
    return ast.Module(body=list(functions.values()), type_ignores=[])


def install_polls(
    idle_poll_s: float,
    reply_poll_s: float = REPLY_POLL_S,
    busy_poll_s: float = BUSY_POLL_S,
    busy_window_s: float = BUSY_WINDOW_S,
) -> BusyPoll:
    """Replace Flower's SuperNode loop, in this process, with the same loop that pulls every
    ``busy_poll_s`` seconds within ``busy_window_s`` of pushing a reply and every
    ``idle_poll_s`` otherwise, and looks for its ClientApp's reply, and for each of the
    reply's objects, every ``reply_poll_s`` seconds. Returns the loop's ``BusyPoll``."""
    for name, value, sleep in (
        ("--idle-poll", idle_poll_s, IDLE_SLEEP),
        ("--reply-poll", reply_poll_s, REPLY_SLEEP),
    ):
        if not 0 < value <= sleep.seconds:
            raise FlowerPatchError(f"{name} must be in (0, {sleep.seconds}] s, got {value}")
    poll = BusyPoll(idle_poll_s, busy_poll_s, busy_window_s)
    require_patched_flwr(
        "securefed's SuperNode patches the polling of",
        "Run plain flower-supernode (3 s idle poll), or ",
    )
    loop_module = importlib.import_module(_LOOP_MODULE)
    patched = patch_sleeps(
        inspect.getsource(loop_module),
        {IDLE_SLEEP: _PULL_INTERVAL, REPLY_SLEEP: reply_poll_s, OBJECT_SLEEP: reply_poll_s},
    )
    # compiled under the installed file's name and line numbers, into Flower's own module
    exec(compile(patched, inspect.getsourcefile(loop_module), "exec"), vars(loop_module))  # noqa: S102
    setattr(loop_module, _PULL_INTERVAL, poll.interval)
    push_messages = loop_module._push_messages  # the loop calls it by its module-level name

    @functools.wraps(push_messages)
    def push_then_poll_busy(*args, **kwargs) -> None:
        push_messages(*args, **kwargs)
        poll.replied()

    loop_module._push_messages = push_then_poll_busy
    cli = importlib.import_module(_CLI_MODULE)  # it imported the loop function by name
    cli.start_client_internal = loop_module.start_client_internal
    return poll


def main(argv: list[str] | None = None) -> None:
    """``flower-supernode`` with ``--idle-poll``, ``--reply-poll``, ``--busy-poll`` and
    ``--busy-window``; every other argument is Flower's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--idle-poll", type=float, default=IDLE_POLL_S, help="seconds")
    parser.add_argument("--reply-poll", type=float, default=REPLY_POLL_S, help="seconds")
    add_busy_arguments(parser, "--idle-poll")
    args, flower_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        busy = busy_seconds(args.busy_poll, args.idle_poll)
        install_polls(args.idle_poll, args.reply_poll, busy, args.busy_window)
        install_pull_retry()
    except (FlowerPatchError, ConfigError) as error:
        sys.exit(f"securefed.flower.supernode: {error}")
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *flower_args]
    flower_supernode()


if __name__ == "__main__":
    main()
