"""A poll that is quick for a moment after a reply and at its idle interval otherwise:
``BusyPoll``, and the warm executor's acquire loop that uses it (the SuperNode's pull uses it
too: ``test_supernode_poll.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from securefed.errors import ConfigError
from securefed.flower import supernode, warm_node
from securefed.flower.busy_poll import BusyPoll


class _Stop(BaseException):  # not an Exception: the executor's loop catches some of those
    pass


def test_busy_for_the_window_after_a_reply_idle_before_and_after():
    now = [50.0]
    poll = BusyPoll(idle_s=0.1, busy_s=0.02, window_s=2.0, clock=lambda: now[0])
    assert poll.interval() == 0.1  # nothing replied to yet: a node out of any run
    poll.replied()
    assert poll.interval() == 0.02
    now[0] += 1.99
    assert poll.interval() == 0.02
    now[0] += 0.01
    assert poll.interval() == 0.1
    poll.replied()  # the next stage
    assert poll.interval() == 0.02
    never = BusyPoll(idle_s=0.1, busy_s=0.02, window_s=0, clock=lambda: now[0])
    never.replied()
    assert never.interval() == 0.1


def test_a_busy_poll_slower_than_idle_or_a_negative_window_is_refused(monkeypatch):
    for busy, window, key in ((0.2, 1, "--busy-poll"), (0, 1, "--busy-poll"),
                              (0.02, -1, "--busy-window")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            BusyPoll(idle_s=0.1, busy_s=busy, window_s=window)
    monkeypatch.setattr(warm_node, "serve", lambda *_: None)
    with pytest.raises(SystemExit, match="--busy-poll"):
        warm_node.main(["--runtime-api-address", "127.0.0.1:1", "--insecure", "--busy-poll", "1"])


def test_the_executor_asks_quickly_for_the_next_task_after_one_then_at_its_interval(monkeypatch):
    now = [0.0]
    empty = SimpleNamespace(HasField=lambda _: False, token="")
    task = SimpleNamespace(HasField=lambda _: True, token="t", task=SimpleNamespace(task_id=1))
    answers = iter([empty, task, empty, empty, empty, empty])
    acquire = SimpleNamespace(AcquireTask=lambda _: next(answers))
    monkeypatch.setattr(warm_node, "_client", lambda *_: acquire)
    ran = []
    monkeypatch.setattr(warm_node, "run_task", lambda *args: ran.append(args) or "completed")
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if len(slept) == 5:
            raise _Stop

    monkeypatch.setattr(warm_node, "time", SimpleNamespace(sleep=sleep))
    poll = BusyPoll(idle_s=0.1, busy_s=0.02, window_s=0.05, clock=lambda: now[0])
    with pytest.raises(_Stop):
        warm_node.serve("127.0.0.1:1", None, None, poll)
    assert ran == [("127.0.0.1:1", "t", None)]
    assert slept == [0.1, 0.02, 0.02, 0.02, 0.1]  # idle; the task; busy for 0.05 s; idle


def test_the_default_busy_poll_is_never_slower_than_a_shorter_idle_poll(monkeypatch):
    installed = []
    monkeypatch.setattr(supernode, "install_polls", lambda *args: installed.append(args))
    monkeypatch.setattr(supernode, "install_pull_retry", lambda: None)
    monkeypatch.setattr("flwr.supernode.cli.flower_supernode", lambda: None)
    monkeypatch.setattr("sys.argv", ["x"])
    supernode.main(["--idle-poll", "0.02", "--insecure"])
    supernode.main(["--insecure"])
    assert installed == [(0.02, 0.05, 0.02, 2.0), (0.2, 0.05, 0.05, 2.0)]
    served = []
    monkeypatch.setattr(warm_node, "install_pull_retry", lambda: None)
    monkeypatch.setattr(warm_node, "serve", lambda *args: served.append(args[-1]))
    address = ["--runtime-api-address", "127.0.0.1:1", "--insecure"]
    warm_node.main([*address, "--poll-interval", "0.01"])
    warm_node.main(address)
    polls = [(p.idle_s, p.busy_s, p.window_s) for p in served]
    assert polls == [(0.01, 0.01, 2.0), (0.1, 0.05, 2.0)]
