"""Flower's own SuperNode, polling the SuperLink every ``--idle-poll`` seconds instead of 3.

Flower 1.42's SuperNode loop (``flwr.supernode.start_client_internal.start_client_internal``)
pulls a message from the SuperLink and, when there is none, sleeps a hard-coded 3 s before
pulling again; no flag, environment variable or newer release changes it (read in Flower's
repository, December 2026). A securefed round is five exchanges, and a node pulls again right
after it pushes a reply, before the server has sent the next stage: every exchange then
waits up to 3 s for nothing, about 15 s a round whatever the model. Run instead::

    python -m securefed.flower.supernode --idle-poll 0.1 <every flower-supernode argument>

which is ``flower-supernode`` with that one sleep's argument replaced and nothing else: the
installed function's source is parsed, the one ``time.sleep(3)`` that the main loop reaches
when a pull returned no message is found (exactly one such call, else this refuses),
its argument is replaced by ``--idle-poll``, and the function is compiled back into Flower's
own module, where ``flower_supernode`` calls it. Every other line (connection, node
authentication, heartbeats, the Runtime API) is Flower's. It refuses any flwr but the one
version it was written against (``PATCHED_FLWR_VERSION``), so an upgrade is a conscious
step: ``tests/flower/test_supernode_poll.py`` fails when the patch no longer applies.

The cost: an idle node sends ``1 / idle-poll`` pull requests a second to the SuperLink
(deploy/README.md, "The SuperNode's idle poll").
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Callable

from securefed.errors import SecurefedError

PATCHED_FLWR_VERSION = "1.42.0"
IDLE_POLL_S = 0.2  # securefed's default: 5 pulls a second from an idle node
FLOWER_IDLE_SLEEP_S = 3  # the constant Flower 1.42.0 sleeps when a pull returns no message
_LOOP_MODULE = "flwr.supernode.start_client_internal"
_LOOP_FUNCTION = "start_client_internal"
_CLI_MODULE = "flwr.supernode.cli.flower_supernode"


class SuperNodePatchError(SecurefedError):
    """The installed Flower is not the code this SuperNode's one change was written for."""


def _is_idle_sleep(node: ast.AST) -> bool:
    """``time.sleep(3)``, the statement the loop runs after a pull that returned nothing."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "sleep"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "time"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == FLOWER_IDLE_SLEEP_S
    )


def _idle_branches(loop_function: ast.FunctionDef) -> list[ast.If]:
    """The ``if run_id is None:`` branches of the function's ``while True:`` loops."""
    return [
        statement
        for loop in ast.walk(loop_function)
        if isinstance(loop, ast.While)
        and isinstance(loop.test, ast.Constant)
        and loop.test.value is True
        for statement in loop.body
        if isinstance(statement, ast.If)
        and isinstance(statement.test, ast.Compare)
        and isinstance(statement.test.left, ast.Name)
        and statement.test.left.id == "run_id"
        and isinstance(statement.test.ops[0], ast.Is)
        and isinstance(statement.test.comparators[0], ast.Constant)
        and statement.test.comparators[0].value is None
    ]


def patch_idle_sleep(module_source: str, idle_poll_s: float) -> ast.Module:
    """The loop function of ``module_source`` with its idle sleep's argument replaced.

    Raises ``SuperNodePatchError`` unless the module defines the loop function once and its
    ``while True:`` loop has exactly one ``time.sleep(3)`` in exactly one ``if run_id is
    None:`` branch, and nowhere else in the function.
    """
    tree = ast.parse(module_source)
    functions = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == _LOOP_FUNCTION
    ]
    if len(functions) != 1:
        raise SuperNodePatchError(f"{_LOOP_MODULE} has {len(functions)} {_LOOP_FUNCTION}()")
    branches = _idle_branches(functions[0])
    in_branch = [n for b in branches for n in ast.walk(b) if _is_idle_sleep(n)]
    anywhere = [n for n in ast.walk(functions[0]) if _is_idle_sleep(n)]
    if len(branches) != 1 or len(in_branch) != 1 or len(anywhere) != 1:
        raise SuperNodePatchError(
            f"{_LOOP_MODULE}.{_LOOP_FUNCTION} no longer has the one idle "
            f"time.sleep({FLOWER_IDLE_SLEEP_S}) this patch replaces (found "
            f"{len(branches)} 'if run_id is None' branches, {len(in_branch)} such sleeps in "
            f"them, {len(anywhere)} in the function)"
        )
    in_branch[0].args[0] = ast.copy_location(ast.Constant(idle_poll_s), in_branch[0].args[0])
    return ast.Module(body=functions, type_ignores=[])


def install_idle_poll(idle_poll_s: float) -> Callable[..., None]:
    """Replace Flower's SuperNode loop with the same loop polling every ``idle_poll_s``
    seconds when idle, in this process; returns the new loop function."""
    if not 0 < idle_poll_s <= FLOWER_IDLE_SLEEP_S:
        raise SuperNodePatchError(
            f"--idle-poll must be in (0, {FLOWER_IDLE_SLEEP_S}] seconds, got {idle_poll_s}"
        )
    installed = importlib.metadata.version("flwr")
    if installed != PATCHED_FLWR_VERSION:
        raise SuperNodePatchError(
            f"securefed's SuperNode patches flwr {PATCHED_FLWR_VERSION}'s idle poll; flwr "
            f"{installed} is installed. Run plain flower-supernode (3 s idle poll), or "
            f"install flwr=={PATCHED_FLWR_VERSION}"
        )
    loop_module = importlib.import_module(_LOOP_MODULE)
    patched = patch_idle_sleep(inspect.getsource(loop_module), idle_poll_s)
    # compiled under the installed file's name and line numbers, into Flower's own module
    exec(compile(patched, inspect.getsourcefile(loop_module), "exec"), vars(loop_module))  # noqa: S102
    loop = getattr(loop_module, _LOOP_FUNCTION)
    setattr(importlib.import_module(_CLI_MODULE), _LOOP_FUNCTION, loop)  # what the CLI calls
    return loop


def main(argv: list[str] | None = None) -> None:
    """``flower-supernode`` with ``--idle-poll``; every other argument is Flower's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--idle-poll", type=float, default=IDLE_POLL_S, help="seconds")
    args, flower_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        install_idle_poll(args.idle_poll)
    except SuperNodePatchError as error:
        sys.exit(f"securefed.flower.supernode: {error}")
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *flower_args]
    flower_supernode()


if __name__ == "__main__":
    main()
