"""securefed's SuperNode is Flower's with one sleep shortened: the patch applies to the
installed flwr (this file fails when an upgrade moves or changes that sleep), the patched loop
sleeps ``--idle-poll`` where Flower's sleeps 3 s, and anything else is refused."""

from __future__ import annotations

import importlib
import inspect
import sys
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from securefed.flower import supernode
from securefed.flower.supernode import SuperNodePatchError, install_idle_poll, patch_idle_sleep

LOOP = importlib.import_module("flwr.supernode.start_client_internal")
CLI = importlib.import_module("flwr.supernode.cli.flower_supernode")


@pytest.fixture
def restore_flower(monkeypatch):
    """Flower's own loop function is put back after the test (the patch rebinds it)."""
    monkeypatch.setattr(LOOP, "start_client_internal", LOOP.start_client_internal)
    monkeypatch.setattr(CLI, "start_client_internal", CLI.start_client_internal)


class _Stop(Exception):
    pass


def _first_idle_sleep(monkeypatch, loop) -> float:
    """Run ``loop`` against a SuperLink that never has a message; the seconds of its first
    sleep (which ends the run)."""
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        raise _Stop

    @contextmanager
    def no_messages(**_):
        yield (7, None, None, None, None, None, None, None)

    monkeypatch.setattr(LOOP, "time", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(LOOP, "register_signal_handlers", lambda **_: None)
    monkeypatch.setattr(LOOP, "_init_connection", no_messages)
    monkeypatch.setattr(LOOP, "_pull_and_store_message", lambda **_: None)
    factory = SimpleNamespace(
        objectstore_factory=SimpleNamespace(store=lambda: None),
        state=lambda: SimpleNamespace(set_node_id=lambda _: None),
    )
    with pytest.raises(_Stop):
        loop(state_factory=factory, server_address="x", node_config={}, isolation="process")
    return slept[0]


def test_the_patched_loop_polls_at_idle_poll_where_flowers_sleeps_3_s(monkeypatch, restore_flower):
    flowers = LOOP.start_client_internal
    loop = install_idle_poll(0.05)
    assert CLI.start_client_internal is loop  # what flower-supernode calls
    assert loop.__code__.co_filename == inspect.getsourcefile(LOOP)  # tracebacks: Flower's file
    assert _first_idle_sleep(monkeypatch, flowers) == 3
    assert _first_idle_sleep(monkeypatch, loop) == 0.05


def test_a_moved_or_changed_idle_sleep_is_refused():
    source = inspect.getsource(LOOP)
    assert patch_idle_sleep(source, 0.1)  # the installed flwr's source patches
    for changed in (
        source.replace("time.sleep(3)", "time.sleep(2)"),  # Flower changed the constant
        source.replace("time.sleep(3)", "time.sleep(3); time.sleep(3)"),  # a second one
        source.replace("if run_id is None:", "if not run_id:"),  # the branch changed
        source.replace("        while True:", "        time.sleep(3)\n        while True:"),
        source.replace("def start_client_internal(", "def start_node("),  # renamed
    ):
        assert changed != source
        with pytest.raises(SuperNodePatchError):
            patch_idle_sleep(changed, 0.1)


def test_another_flwr_version_or_a_bad_interval_is_refused(monkeypatch, restore_flower):
    with pytest.raises(SuperNodePatchError, match="--idle-poll must be in"):
        install_idle_poll(0)
    monkeypatch.setattr(supernode.importlib.metadata, "version", lambda _: "1.43.0")
    with pytest.raises(SuperNodePatchError, match="flwr 1.43.0 is installed"):
        install_idle_poll(0.1)
    monkeypatch.setattr(sys, "argv", ["x", "--idle-poll", "0.1", "--insecure"])
    with pytest.raises(SystemExit, match="patches flwr 1.42.0's idle poll"):
        supernode.main()
