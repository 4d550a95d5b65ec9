"""``LocalFederation.status`` survives the SuperLink closing its kept-alive connection.

CI once failed on one poll: the SuperLink closed the idle connection just as the poll went out
("Server disconnected without sending a response"), and the error ended a deployment test whose
run was healthy. A transport error now drops the client and asks again on a fresh one.
"""

from __future__ import annotations

import httpx
import pytest
from flwr.common.serde import run_to_proto
from flwr.proto.control_pb2 import ListRunsResponse  # pylint: disable=E0611
from flwr.supercore.run import Run, RunStatus

from securefed.flower import localhost
from securefed.flower.localhost import STATUS_ATTEMPTS, LocalFederation

RUN_ID = 7


class _Control:
    """A Control API client whose first ``failures`` calls (across clients) drop the connection."""

    made: list[_Control] = []

    def __init__(self, failures: list[int]) -> None:
        self.failures, self.closed = failures, False
        _Control.made.append(self)

    def ListRuns(self, request):  # noqa: N802 (Flower's name)
        assert request.run_id == RUN_ID
        if self.failures[0] > 0:
            self.failures[0] -= 1
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        run = Run.create_empty(RUN_ID)
        run.status = RunStatus(status="finished", sub_status="completed", details="")
        return ListRunsResponse(run_dict={RUN_ID: run_to_proto(run)})

    def close(self) -> None:
        self.closed = True


def _federation(tmp_path, monkeypatch, failures: int) -> LocalFederation:
    fed = LocalFederation(tmp_path, [1, 2, 3])
    remaining = [failures]
    _Control.made = []

    def client():
        if fed._control is None:
            fed._control = _Control(remaining)
        return fed._control

    monkeypatch.setattr(fed, "_control_client", client)
    monkeypatch.setattr(localhost.time, "sleep", lambda s: None)
    return fed


def test_a_dropped_connection_is_asked_again_on_a_fresh_client(tmp_path, monkeypatch):
    fed = _federation(tmp_path, monkeypatch, failures=STATUS_ATTEMPTS - 1)
    assert fed.status(RUN_ID) == "finished:completed"
    assert len(_Control.made) == STATUS_ATTEMPTS  # a fresh client after each drop
    assert all(c.closed for c in _Control.made[:-1]) and not _Control.made[-1].closed


def test_a_superlink_that_stays_away_still_raises(tmp_path, monkeypatch):
    fed = _federation(tmp_path, monkeypatch, failures=STATUS_ATTEMPTS)
    with pytest.raises(httpx.RemoteProtocolError):
        fed.status(RUN_ID)
    assert len(_Control.made) == STATUS_ATTEMPTS and fed._control is None
