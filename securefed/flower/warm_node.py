"""A warm node: one long-running process runs every ClientApp task of one SuperNode.

By default a SuperNode starts a fresh ``flwr-clientapp`` process per message, so each round
starts Python, Flower and torch again and reloads the backbone, its frozen-prefix cache and
the institution's encoded data. Started with ``--isolation process``, the SuperNode instead
hands each task to whichever executor acquires it on its local Runtime API; this module is
that executor, for securefed's ClientApp only::

    flower-supernode --isolation process --superexec-auth-secret-file exec.secret ... &
    python -m securefed.flower.warm_node --runtime-api-address 127.0.0.1:9094 \\
        --superexec-auth-secret-file exec.secret --insecure

It acquires a task (HMAC-signed with the secret the SuperNode was started with, so no other
local process can take this node's tasks), pulls the message and the node's ``Context``
with that task's own token, runs ``securefed.flower.client_app.app`` in this process, and
pushes the reply and the updated ``Context`` back -- Flower's own ``flwr-clientapp`` steps
(``flwr.supernode.runtime.run_clientapp``), minus the process exit, and with a pull of an
object not yet on the node retried after 0.05 s instead of 1 s (``object_pulls``). It asks
its SuperNode for a task every ``--poll-interval`` seconds, and every ``--busy-poll`` for
``--busy-window`` seconds after it finished one, when the next stage's task is due
(``busy_poll``; requests to the node's own SuperNode only). What
stays loaded is what the ClientApp caches (``client_app._local``: model, frozen-prefix
cache, encoded data); protocol state and seeds live in ``context.state`` on the SuperNode
exactly as with a fresh process per message, so a restarted SuperNode or executor recovers
as before. The executor runs the securefed installed on this node, whatever code a run's
FAB names.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import httpx
from flwr.app import Message
from flwr.app.error import Error
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.auth.superexec_secret import load_superexec_auth_secret
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.retry import RetryInvoker, exponential
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.tls import validate_and_resolve_root_certificates
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from securefed.errors import ConfigError
from securefed.flower.busy_poll import BusyPoll, add_busy_arguments, busy_seconds
from securefed.flower.client_app import app
from securefed.flower.flower_pin import FlowerPatchError
from securefed.flower.object_pulls import install_pull_retry

LOG = logging.getLogger("securefed.flower.warm_node")
_ACQUIRE = "/flwr.proto.Runtime/AcquireTask"
TASK_RETRY_S = 30.0  # how long one task's calls wait for a SuperNode that stopped answering
POLL_S = 0.1  # how often an idle executor asks its SuperNode for a task (busy_poll: after one)


def _retry(max_time_s: float) -> RetryInvoker:
    """Retry transport errors for at most ``max_time_s``, then raise. Flower's own invoker
    (``make_simple_http_retry_invoker``) retries forever and sends its process SIGINT on a
    401: right for a ``flwr-clientapp`` that lives for one task, wrong for an executor that
    must outlive a SuperNode restart (whose new state no longer knows the old task's token)."""
    return RetryInvoker(
        wait_gen_factory=lambda: exponential(max_delay=2.0),
        recoverable_exceptions=httpx.TransportError,
        max_tries=None,
        max_time=max_time_s,
    )


def _client(
    address: str, certificates: bytes | None, interceptors: list, max_time_s: float
) -> RuntimeHttpClient:
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=certificates is None,
        root_certificates=certificates,
        interceptors=interceptors,
        retry_invoker=_retry(max_time_s),
    )


def run_task(address: str, token: str, certificates: bytes | None) -> str:
    """Run one ClientApp task in this process; returns Flower's sub-status of the task."""
    interceptors = [
        RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
        RuntimeTokenHttpInterceptor(token),
    ]
    client = _client(address, certificates, interceptors, TASK_RETRY_S)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    message = reply = context = None
    status, details = SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, _, _ = pull_task_input(client)
        reply = app(message=message, context=context)
        status, details = SubStatus.COMPLETED, ""
    except Exception as exc:  # noqa: BLE001 - answered to the server as Flower's own runner does
        LOG.exception("ClientApp raised")
        details = f"{type(exc)}:<'{exc}'>"
        if message is not None:
            error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details)
            reply = Message(error, reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
            push_task_output(client, context, status, details)
        finally:
            heartbeat.stop()
            client.close()
    return status


def serve(address: str, secret: bytes | None, certificates: bytes | None, poll: BusyPoll) -> None:
    """Acquire and run this node's ClientApp tasks one at a time, for as long as the process
    lives, asking for one every ``poll.interval()`` seconds; a SuperNode that is down or
    restarting is waited for."""
    interceptors: list = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
    if secret is not None:
        interceptors.append(
            SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods={_ACQUIRE})
        )
    acquire = _client(address, certificates, interceptors, 0.0)  # retried by the loop below
    while True:
        try:
            response = acquire.AcquireTask(
                AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
            )
        except httpx.HTTPError as exc:  # the SuperNode is down or restarting: wait for it
            LOG.info("Runtime API at %s unreachable (%s); retrying", address, exc)
            time.sleep(1.0)
            continue
        if response.HasField("task") and response.token:
            try:
                status = run_task(address, response.token, certificates)
            except httpx.HTTPError as exc:  # the SuperNode went away mid-task: it times it out
                status = f"lost ({exc})"
            LOG.info("task %s: %s", response.task.task_id, status)
            poll.replied()
        else:
            time.sleep(poll.interval())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's, host:port")
    parser.add_argument("--superexec-auth-secret-file", help="as given to flower-supernode")
    tls = parser.add_mutually_exclusive_group(required=True)
    tls.add_argument("--insecure", action="store_true", help="plain HTTP on the node's loopback")
    tls.add_argument("--root-certificates", help="CA of the Runtime API's TLS certificate")
    parser.add_argument("--poll-interval", type=float, default=POLL_S, help="seconds")
    add_busy_arguments(parser, "--poll-interval")
    args = parser.parse_args(argv)
    try:
        busy = busy_seconds(args.busy_poll, args.poll_interval)
        poll = BusyPoll(args.poll_interval, busy, args.busy_window)
        install_pull_retry()  # a task's message is often not all on the node when acquired
    except (FlowerPatchError, ConfigError) as error:
        sys.exit(f"securefed.flower.warm_node: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll
    certificates = validate_and_resolve_root_certificates(args.root_certificates, args.insecure)
    secret = load_superexec_auth_secret(args.superexec_auth_secret_file)
    serve(args.runtime_api_address, secret, certificates, poll)


if __name__ == "__main__":
    main()
