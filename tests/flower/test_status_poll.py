"""``LocalFederation.status`` survives a transient failure; the test process's other calls to
Flower end a run only with an error that says what failed.

CI once failed on one poll: the SuperLink closed the idle connection just as the poll went out
("Server disconnected without sending a response"), and the error ended a deployment test whose
run was healthy. A transport error or a 5xx (the SuperLink's own exception, a busy state
database) now drops the client and asks again on a fresh one; a 4xx (a refused request) does not.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest
from flwr.common.serde import run_to_proto
from flwr.proto.control_pb2 import ListRunsResponse  # pylint: disable=E0611
from flwr.supercore.run import Run, RunStatus

from securefed.flower import localhost
from securefed.flower.localhost import STATUS_ATTEMPTS, DeploymentError, LocalFederation

RUN_ID = 7


class _Control:
    """A Control API client whose first ``failures`` calls (across clients) fail with ``error``."""

    made: list[_Control] = []

    def __init__(self, failures: list[int], error) -> None:
        self.failures, self.error, self.closed = failures, error, False
        _Control.made.append(self)

    def ListRuns(self, request):  # noqa: N802 (Flower's name)
        assert request.run_id == RUN_ID
        if self.failures[0] > 0:
            self.failures[0] -= 1
            raise self.error()
        run = Run.create_empty(RUN_ID)
        run.status = RunStatus(status="finished", sub_status="completed", details="")
        return ListRunsResponse(run_dict={RUN_ID: run_to_proto(run)})

    def close(self) -> None:
        self.closed = True


def _dropped() -> httpx.HTTPError:
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


def _answered(code: int):
    def error() -> httpx.HTTPError:
        request = httpx.Request("POST", "https://127.0.0.1/v1/control/list-runs")
        response = httpx.Response(code, request=request)
        return httpx.HTTPStatusError(f"{code}", request=request, response=response)

    return error


def _federation(tmp_path, monkeypatch, failures: int, error=_dropped) -> LocalFederation:
    fed = LocalFederation(tmp_path, [1, 2, 3])
    remaining = [failures]
    _Control.made = []

    def client():
        if fed._control is None:
            fed._control = _Control(remaining, error)
        return fed._control

    monkeypatch.setattr(fed, "_control_client", client)
    monkeypatch.setattr(localhost.time, "sleep", lambda s: None)
    return fed


@pytest.mark.parametrize(
    "error",
    [_dropped, lambda: httpx.ReadTimeout("timed out"), _answered(500), _answered(503)],
    ids=["dropped", "timeout", "500", "503"],
)
def test_a_transient_failure_is_asked_again_on_a_fresh_client(tmp_path, monkeypatch, error):
    fed = _federation(tmp_path, monkeypatch, failures=STATUS_ATTEMPTS - 1, error=error)
    assert fed.status(RUN_ID) == "finished:completed"
    assert len(_Control.made) == STATUS_ATTEMPTS  # a fresh client after each drop
    assert all(c.closed for c in _Control.made[:-1]) and not _Control.made[-1].closed


def test_a_superlink_that_stays_away_still_raises(tmp_path, monkeypatch):
    fed = _federation(tmp_path, monkeypatch, failures=STATUS_ATTEMPTS)
    with pytest.raises(httpx.RemoteProtocolError):
        fed.status(RUN_ID)
    assert len(_Control.made) == STATUS_ATTEMPTS and fed._control is None


def test_a_refused_request_is_not_asked_again(tmp_path, monkeypatch):
    fed = _federation(tmp_path, monkeypatch, failures=1, error=_answered(400))
    with pytest.raises(httpx.HTTPStatusError):
        fed.status(RUN_ID)
    assert len(_Control.made) == 1


def test_a_flwr_command_that_hangs_is_a_deployment_error_and_log_never_raises(
    tmp_path, monkeypatch
):
    """``wait`` puts ``log``'s output in the error it raises: a ``flwr log`` that hangs on a
    loaded machine must not replace that error with its own timeout."""

    def hang(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(localhost.subprocess, "run", hang)
    fed = LocalFederation(tmp_path, [1, 2, 3])
    with pytest.raises(DeploymentError, match="flwr run .* still running after"):
        fed.flwr("run", "app")
    assert fed.log(RUN_ID).startswith("(no log: flwr log 7")
