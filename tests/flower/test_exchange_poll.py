"""The ServerApp's wait for a stage's replies: it sleeps its poll interval only after a pull
that brought no reply, and asks again at once after one that brought some (the other nodes'
replies are due); a reply to another message never counts."""

from __future__ import annotations

from types import SimpleNamespace

from flwr.app import RecordDict

from securefed.flower import exchange as exchange_module
from securefed.flower.exchange import exchange


def _reply(to: str) -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=to),
                           has_error=lambda: False)  # fmt: skip


class _Grid:
    """Accepts every message; each pull answers the next scripted batch of replies."""

    def __init__(self, batches: list[list[str]], events: list[str]) -> None:
        self.batches, self.events = iter(batches), events

    def push_messages(self, messages):
        return [f"m{message.metadata.dst_node_id}" for message in messages]

    def pull_messages(self, message_ids):
        self.events.append("pull")
        return [_reply(to) for to in next(self.batches, [])]


def _run(monkeypatch, batches: list[list[str]], timeout_s: float = 60.0):
    events: list[str] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        assert seconds == 0.1
        events.append("sleep")
        clock[0] += seconds

    monkeypatch.setattr(exchange_module, "Message", lambda body, dst_node_id, **_: SimpleNamespace(
        metadata=SimpleNamespace(dst_node_id=dst_node_id)))  # fmt: skip
    monkeypatch.setattr(
        exchange_module, "time", SimpleNamespace(sleep=sleep, perf_counter=lambda: clock[0])
    )
    grid = _Grid(batches, events)
    result = exchange(grid, "train.x", {n: RecordDict() for n in (1, 2, 3)}, group_id="0",
                      timeout_s=timeout_s, poll_s=0.1)  # fmt: skip
    return result, events


def test_after_a_pull_that_brought_replies_the_server_asks_again_at_once(monkeypatch):
    result, events = _run(monkeypatch, [[], ["m1"], ["m2"], [], ["m3"]])
    assert sorted(result.replies) == [1, 2, 3] and not result.timed_out
    assert events == ["pull", "sleep", "pull", "pull", "pull", "sleep", "pull"]


def test_a_reply_to_another_message_does_not_count_as_one(monkeypatch):
    result, events = _run(monkeypatch, [["old"], ["old"], ["m1"]], timeout_s=0.25)
    assert sorted(result.replies) == [1] and result.timed_out == (2, 3)
    assert events == ["pull", "sleep", "pull", "sleep", "pull", "pull", "sleep", "pull"]
