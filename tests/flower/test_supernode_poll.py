"""securefed's SuperNode is Flower's with two sleeps shortened: the patch applies to the
installed flwr (this file fails when an upgrade moves or changes either sleep), the patched
loop sleeps ``--idle-poll`` and ``--reply-poll`` where Flower's sleeps 3 s and 0.5 s, and
anything else is refused."""

from __future__ import annotations

import importlib
import inspect
import sys
import tomllib
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement

from securefed.flower import supernode
from securefed.flower.supernode import (
    IDLE_SLEEP,
    PATCHED_FLWR_VERSION,
    REPLY_SLEEP,
    SuperNodePatchError,
    install_polls,
    patch_sleeps,
)

LOOP = importlib.import_module("flwr.supernode.start_client_internal")
CLI = importlib.import_module("flwr.supernode.cli.flower_supernode")
BOTH = {IDLE_SLEEP: 0.1, REPLY_SLEEP: 0.01}


@pytest.fixture
def flowers(monkeypatch):
    """Flower's own functions, put back after the test (the patch rebinds them)."""
    for module, name in ((LOOP, "start_client_internal"), (LOOP, "_push_messages"),
                         (CLI, "start_client_internal")):  # fmt: skip
        monkeypatch.setattr(module, name, getattr(module, name))
    return LOOP.start_client_internal, LOOP._push_messages


class _Stop(Exception):
    pass


def _first_sleep(monkeypatch, call) -> float:
    """The seconds of the first ``time.sleep`` that ``call()`` reaches (which stops it)."""
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        raise _Stop

    monkeypatch.setattr(LOOP, "time", SimpleNamespace(sleep=sleep))
    with pytest.raises(_Stop):
        call()
    return slept[0]


def _idle_sleep(monkeypatch) -> float:
    """What the SuperNode loop sleeps when the SuperLink has no message for it."""

    @contextmanager
    def connection(**_):
        yield (7, None, None, None, None, None, None, None)

    monkeypatch.setattr(LOOP, "register_signal_handlers", lambda **_: None)
    monkeypatch.setattr(LOOP, "_init_connection", connection)
    monkeypatch.setattr(LOOP, "_pull_and_store_message", lambda **_: None)
    factory = SimpleNamespace(
        objectstore_factory=SimpleNamespace(store=lambda: None),
        state=lambda: SimpleNamespace(set_node_id=lambda _: None),
    )
    return _first_sleep(monkeypatch, lambda: LOOP.start_client_internal(
        state_factory=factory, server_address="x", node_config={}, isolation="process"
    ))  # fmt: skip


def _reply_sleep(monkeypatch) -> float:
    """What the SuperNode sleeps when its ClientApp's reply is not ready yet."""
    state = SimpleNamespace(get_messages_legacy=lambda **_: [])
    return _first_sleep(monkeypatch, lambda: LOOP._push_messages(
        state=state, object_store=None, send=None, push_object=None
    ))  # fmt: skip


def test_the_patched_loop_waits_the_given_seconds_where_flowers_waits_3_and_0_5(
    monkeypatch, flowers
):
    assert (_idle_sleep(monkeypatch), _reply_sleep(monkeypatch)) == (3, 0.5)  # Flower's
    install_polls(0.2, 0.05)
    assert CLI.start_client_internal is LOOP.start_client_internal  # what flower-supernode calls
    assert (LOOP.start_client_internal, LOOP._push_messages) != flowers
    assert LOOP._push_messages.__code__.co_filename == inspect.getsourcefile(LOOP)  # tracebacks
    assert (_idle_sleep(monkeypatch), _reply_sleep(monkeypatch)) == (0.2, 0.05)


def test_a_moved_or_changed_sleep_is_refused():
    source = inspect.getsource(LOOP)
    assert patch_sleeps(source, BOTH)  # the installed flwr's source patches
    guard = "while not (reply_messages := state.get_messages_legacy(is_reply=True)):"
    for changed in (
        source.replace("time.sleep(3)", "time.sleep(2)"),  # Flower changed the constant
        source.replace("time.sleep(3)", "time.sleep(3); time.sleep(3)"),  # a second one
        source.replace("if run_id is None:", "if not run_id:"),  # the branch changed
        source.replace("def start_client_internal(", "def start_node("),  # renamed
        source.replace(guard, guard.replace("is_reply=True", "is_reply=True, limit=1")),
        source.replace(f"{guard}\n        time.sleep(0.5)", f"{guard}\n        time.sleep(1)"),
    ):
        assert changed != source
        with pytest.raises(SuperNodePatchError):
            patch_sleeps(changed, BOTH)


def test_another_flwr_version_or_a_bad_interval_is_refused(monkeypatch, flowers):
    with pytest.raises(SuperNodePatchError, match="--idle-poll must be in"):
        install_polls(0)
    with pytest.raises(SuperNodePatchError, match="--reply-poll must be in"):
        install_polls(0.2, 0.6)
    monkeypatch.setattr(supernode.importlib.metadata, "version", lambda _: "1.43.0")
    with pytest.raises(SuperNodePatchError, match="flwr 1.43.0 is installed"):
        install_polls(0.1)
    monkeypatch.setattr(sys, "argv", ["x", "--idle-poll", "0.1", "--insecure"])
    with pytest.raises(SystemExit, match="patches flwr 1.42.0's polling"):
        supernode.main()


def test_securefed_pins_the_flwr_its_supernode_patches():
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    listed = [Requirement(r) for r in project["dependencies"] + [r for e in extras for r in e]]
    flwr = [r for r in listed if r.name == "flwr"]
    assert len(flwr) == 2 and all(str(r.specifier) == f"=={PATCHED_FLWR_VERSION}" for r in flwr)
