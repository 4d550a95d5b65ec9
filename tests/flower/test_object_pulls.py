"""securefed asks again for a Flower object that was not there yet after 0.05 s, not Flower's
1 s: in the SuperNode, the warm executor and the ServerApp; with anything but the flwr it was
written against, or a Flower default that moved, it refuses."""

from __future__ import annotations

import importlib.metadata
import threading
from types import SimpleNamespace

import pytest
from flwr.supercore.inflatable import inflatable_utils
from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

from securefed.flower import server_app, supernode, warm_node
from securefed.flower.flower_pin import FlowerPatchError
from securefed.flower.object_pulls import FLOWER_PULL_RETRY_S, PULL_RETRY_S, install_pull_retry

PULLS = (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree)


@pytest.fixture(autouse=True)
def flowers_defaults(monkeypatch):
    """Flower's own defaults, put back after each test (the patch changes them in place)."""
    for pull in PULLS:
        monkeypatch.setattr(pull, "__kwdefaults__", dict(pull.__kwdefaults__))
        pull.__kwdefaults__["initial_backoff"] = FLOWER_PULL_RETRY_S


def _first_retry_wait(monkeypatch) -> float:
    """The wait of ``pull_objects`` between an unavailable object and asking again."""
    waits = []

    class Event(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return super().wait(0)

    monkeypatch.setattr(inflatable_utils, "threading", SimpleNamespace(Lock=threading.Lock,
                                                                      Event=Event))  # fmt: skip
    answers = iter([ObjectUnavailableError("a"), b"content"])

    def pull(object_id: str) -> bytes:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert inflatable_utils.pull_objects(["a"], pull) == {"a": b"content"}
    return waits[0]


def test_an_unavailable_object_is_asked_again_after_the_short_wait(monkeypatch):
    assert _first_retry_wait(monkeypatch) >= 0.8 * FLOWER_PULL_RETRY_S  # Flower's, +-20%
    install_pull_retry()
    assert _first_retry_wait(monkeypatch) <= 1.2 * PULL_RETRY_S
    for pull in PULLS:  # the executor's pull goes through the other function
        assert pull.__kwdefaults__["initial_backoff"] == PULL_RETRY_S
    install_pull_retry()  # twice in one process is fine


def test_another_flwr_a_moved_default_or_a_bad_wait_is_refused(monkeypatch):
    with pytest.raises(FlowerPatchError, match="must be in"):
        install_pull_retry(0)
    PULLS[1].__kwdefaults__["initial_backoff"] = 2.0  # Flower changed its constant
    with pytest.raises(FlowerPatchError, match="pull_and_inflate_object_from_tree no longer"):
        install_pull_retry()
    assert PULLS[0].__kwdefaults__["initial_backoff"] == FLOWER_PULL_RETRY_S  # nothing changed
    PULLS[1].__kwdefaults__["initial_backoff"] = FLOWER_PULL_RETRY_S
    monkeypatch.setattr(importlib.metadata, "version", lambda _: "1.43.0")
    with pytest.raises(FlowerPatchError, match="flwr 1.43.0 is installed"):
        install_pull_retry()


def _installed() -> bool:
    return all(p.__kwdefaults__["initial_backoff"] == PULL_RETRY_S for p in PULLS)


def test_the_supernode_the_warm_executor_and_the_serverapp_each_install_it(monkeypatch):
    monkeypatch.setattr(supernode, "install_polls", lambda *_: None)
    monkeypatch.setattr("flwr.supernode.cli.flower_supernode", lambda: None)
    monkeypatch.setattr("sys.argv", ["flower-supernode", "--insecure"])
    supernode.main()
    assert _installed()
    PULLS[0].__kwdefaults__["initial_backoff"] = PULLS[1].__kwdefaults__["initial_backoff"] = 1.0
    monkeypatch.setattr(warm_node, "serve", lambda *_: None)
    warm_node.main(["--runtime-api-address", "127.0.0.1:1", "--insecure"])
    assert _installed()
    PULLS[0].__kwdefaults__["initial_backoff"] = PULLS[1].__kwdefaults__["initial_backoff"] = 1.0
    monkeypatch.setattr(server_app, "run_flower_federation", lambda *_: None)
    server_app.main(None, SimpleNamespace(run_config={}, run_id=1))
    assert _installed()
