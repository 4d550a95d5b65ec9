"""securefed's SuperNode is Flower's with three sleeps shortened: the patch applies to the
installed flwr (this file fails when an upgrade moves or changes any of them), the patched
loop sleeps ``--idle-poll`` and ``--reply-poll`` (twice) where Flower's sleeps 3 s and 0.5 s,
``--busy-poll`` instead of ``--idle-poll`` for ``--busy-window`` seconds after it pushed a
reply, and anything else is refused."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
import tomllib
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from flwr.proto.message_pb2 import ObjectTree  # pylint: disable=E0611
from packaging.requirements import Requirement

from securefed.errors import ConfigError
from securefed.flower import supernode
from securefed.flower.flower_pin import PATCHED_FLWR_VERSION, FlowerPatchError
from securefed.flower.supernode import (
    IDLE_SLEEP,
    OBJECT_SLEEP,
    REPLY_SLEEP,
    install_polls,
    patch_sleeps,
)

LOOP = importlib.import_module("flwr.supernode.start_client_internal")
CLI = importlib.import_module("flwr.supernode.cli.flower_supernode")
ALL = {IDLE_SLEEP: 0.1, REPLY_SLEEP: 0.01, OBJECT_SLEEP: 0.01}


@pytest.fixture
def flowers(monkeypatch):
    """Flower's own functions, put back after the test (the patch rebinds them)."""
    for module, name in ((LOOP, "start_client_internal"), (LOOP, "_push_messages"),
                         (CLI, "start_client_internal")):  # fmt: skip
        monkeypatch.setattr(module, name, getattr(module, name))
    return LOOP.start_client_internal, LOOP._push_messages


class _Stop(BaseException):  # not an Exception: Flower's loop catches those
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


def _push_reply(content: bytes, pushed: list | None = None) -> None:
    """Flower's ``_push_messages`` on one reply of the ClientApp, whose one object holds
    ``content`` (``b""``: not pushed by the ClientApp yet)."""
    pushed = [] if pushed is None else pushed
    metadata = SimpleNamespace(group_id="", run_id=1, message_type="train.x", message_id="m",
                               reply_to_message_id="r")  # fmt: skip
    state = SimpleNamespace(
        get_messages_legacy=lambda **_: [SimpleNamespace(metadata=metadata)],
        get_message_processing_duration=lambda **_: 0.0,
        delete_messages=lambda **_: None,
    )
    store = SimpleNamespace(get_object_tree=lambda _: ObjectTree(object_id="m"),
                            get=lambda _: content, delete=lambda _: None)  # fmt: skip
    LOOP._push_messages(state=state, object_store=store, send=lambda *_: ({"m"}, "s"),
                        push_object=lambda *pushing: pushed.append(pushing))  # fmt: skip


def _object_sleep(monkeypatch) -> float:
    """What the SuperNode sleeps when its ClientApp's reply is there but not its objects."""
    return _first_sleep(monkeypatch, lambda: _push_reply(b""))


def _sleeps(monkeypatch) -> tuple[float, float, float]:
    return _idle_sleep(monkeypatch), _reply_sleep(monkeypatch), _object_sleep(monkeypatch)


def test_the_patched_loop_waits_the_given_seconds_where_flowers_waits_3_and_0_5(
    monkeypatch, flowers
):
    assert _sleeps(monkeypatch) == (3, 0.5, 0.5)  # Flower's
    install_polls(0.2, 0.05)
    assert CLI.start_client_internal is LOOP.start_client_internal  # what flower-supernode calls
    assert (LOOP.start_client_internal, LOOP._push_messages) != flowers
    pushing = LOOP._push_messages.__wrapped__  # tracebacks name Flower's file
    assert pushing.__code__.co_filename == inspect.getsourcefile(LOOP)
    assert _sleeps(monkeypatch) == (0.2, 0.05, 0.05)


def test_after_a_reply_the_loop_pulls_every_busy_poll_for_the_busy_window(monkeypatch, flowers):
    now = [100.0]
    poll = install_polls(0.2, 0.05, busy_poll_s=0.03, busy_window_s=1.5)
    poll.clock = lambda: now[0]
    assert _idle_sleep(monkeypatch) == 0.2  # no reply yet: a node out of any run idles
    pushed: list = []
    _push_reply(b"reply", pushed)  # the loop pushes a reply (through the patched function) ...
    assert pushed == [(1, "s", "m", b"reply")]
    assert _idle_sleep(monkeypatch) == 0.03  # ... and the next stage's message is due
    now[0] += 1.49
    assert _idle_sleep(monkeypatch) == 0.03
    now[0] += 0.02
    assert _idle_sleep(monkeypatch) == 0.2  # the window is over: idle again


def test_a_moved_or_changed_sleep_is_refused():
    source = inspect.getsource(LOOP)
    assert patch_sleeps(source, ALL)  # the installed flwr's source patches
    guard = "while not (reply_messages := state.get_messages_legacy(is_reply=True)):"
    for changed in (
        source.replace("time.sleep(3)", "time.sleep(2)"),  # Flower changed the constant
        source.replace("time.sleep(3)", "time.sleep(3); time.sleep(3)"),  # a second one
        source.replace("if run_id is None:", "if not run_id:"),  # the branch changed
        source.replace("def start_client_internal(", "def start_node("),  # renamed
        source.replace(guard, guard.replace("is_reply=True", "is_reply=True, limit=1")),
        source.replace(f"{guard}\n        time.sleep(0.5)", f"{guard}\n        time.sleep(1)"),
        source.replace(
            '== b"":\n                    # Wait', '== b"" and run_id:\n                    # Wait'
        ),
    ):
        assert changed != source
        with pytest.raises(FlowerPatchError):
            patch_sleeps(changed, ALL)


def test_another_flwr_version_or_a_bad_interval_is_refused(monkeypatch, flowers):
    with pytest.raises(FlowerPatchError, match="--idle-poll must be in"):
        install_polls(0)
    with pytest.raises(FlowerPatchError, match="--reply-poll must be in"):
        install_polls(0.2, 0.6)
    with pytest.raises(ConfigError, match="--busy-poll"):
        install_polls(0.2, 0.05, busy_poll_s=0.3)  # never slower than idle
    with pytest.raises(ConfigError, match="--busy-window"):
        install_polls(0.2, 0.05, busy_window_s=-1)
    monkeypatch.setattr(importlib.metadata, "version", lambda _: "1.43.0")
    with pytest.raises(FlowerPatchError, match="flwr 1.43.0 is installed"):
        install_polls(0.1)
    monkeypatch.setattr(sys, "argv", ["x", "--idle-poll", "0.1", "--insecure"])
    with pytest.raises(SystemExit, match="patches the polling of flwr 1.42.0"):
        supernode.main()


def test_securefed_pins_the_flwr_its_supernode_patches():
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    listed = [Requirement(r) for r in project["dependencies"] + [r for e in extras for r in e]]
    flwr = [r for r in listed if r.name == "flwr"]
    assert len(flwr) == 2 and all(str(r.specifier) == f"=={PATCHED_FLWR_VERSION}" for r in flwr)
