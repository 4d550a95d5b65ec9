"""A whole Flower deployment on this machine: one SuperLink and one SuperNode per institution.

Every component is its own process (its own session, so it can be stopped or killed with its
children), TLS is on everywhere, and the SuperLink admits only registered SuperNode keys.
Each SuperNode is Flower's, run through ``securefed.flower.supernode`` so that an idle node
pulls every ``idle_poll_s`` seconds instead of Flower's 3.
Used by ``deploy/localhost.py`` (the one-command recipe) and by the deployment tests.

    with LocalFederation(Path("fed"), institutions=[0, 1, 2]) as fed:
        run_id = fed.launch(APP_DIR, {"overrides": "training.rounds=2", "run-dir": "/tmp/run"})
        fed.wait(run_id, timeout_s=600)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import tomli_w
from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
from flwr.common.serde import run_from_proto
from flwr.proto.control_pb2 import ListRunsRequest  # pylint: disable=E0611
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

from securefed.errors import SecurefedError
from securefed.flower.certs import make_node_key, make_tls
from securefed.flower.node import NODE_CONFIG_DIR_ENV, STATE_DIR_ENV
from securefed.flower.supernode import IDLE_POLL_S
from securefed.secagg import generate_roster

CONNECTION = "securefed-local"
APP_DIR = Path(__file__).resolve().parents[2] / "deploy" / "app"
STATUS_ATTEMPTS = 4  # status polls on fresh connections before a transient error is raised
CLI_TIMEOUT_S = 300.0  # one ``flwr`` command; 1-2 CPU-s here, far more on a loaded machine
SUPERLINK_START_S = 180.0  # ceiling for the SuperLink's health check (a dead one fails at once)


class DeploymentError(SecurefedError):
    """A Flower component did not start, or a run did not finish as asked."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(flwr_home: Path, threads: int = 1) -> dict[str, str]:
    """Children find Flower's executables next to this Python, stay offline and quiet.

    Each process gets ``threads`` math threads: several trainers on a few cores otherwise
    oversubscribe them (measured here: one LoRA step 0.6 s with 1 thread, 12 s with 2, on a
    loaded 2-core machine).
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        FLWR_HOME=str(flwr_home),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.1",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    return env


def _transient(exc: httpx.HTTPError) -> bool:
    """A failure that asking again may not meet: the transport's (a dropped connection, a
    timeout) or the server's own (5xx); not a refusal of the request (4xx)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class LocalFederation:
    """Certificates, SuperLink, registered SuperNodes, and ``flwr`` commands against them."""

    def __init__(
        self,
        workdir: Path,
        institutions: list[int],
        node_config: dict[int, dict] | None = None,
        threads: int = 1,
        warm: bool = True,
        idle_poll_s: float = IDLE_POLL_S,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.institutions = list(institutions)
        self.node_config = node_config or {}
        self.threads = threads
        self.warm = warm  # one long-running ClientApp executor per node (warm_node)
        self.idle_poll_s = idle_poll_s  # a node's pull interval while it has no message
        self.certs = self.workdir / "certs"
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.runtime_ports: dict[int, int] = {}  # each node's Runtime API, kept over restarts
        self._control: ControlHttpClient | None = None  # ``status``'s, made at its first call
        self.insecure = False  # TLS on the SuperLink's one port (``LocalSimulation``: none)

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        make_tls(self.certs, ["localhost", "127.0.0.1"])
        self._make_identities()
        self._write_cli_config()
        tls = ["--ssl-ca-certfile", str(self.certs / "ca.crt"),
               "--ssl-certfile", str(self.certs / "superlink.crt"),
               "--ssl-keyfile", str(self.certs / "superlink.key")]  # fmt: skip
        self._spawn("superlink", ["flower-superlink", *tls, "--enable-supernode-auth",
                                  "--disable-runtime-dependency-installation",
                                  "--host", "127.0.0.1", "--port", str(self.port)])  # fmt: skip
        self._wait_superlink()
        for institution in self.institutions:
            _, public = make_node_key(self.certs, institution)
            self.flwr("supernode", "register", str(public), CONNECTION)
            self.start_node(institution)

    def _make_identities(self) -> None:
        """An Ed25519 identity per institution and the roster every node pins (see
        ``node_security``), so the local federation runs the malicious-server protocol. On
        one machine the private keys share one 0600 file; a real deployment keeps each
        institution's key on its own node."""
        self.roster = self.certs / "roster.json"
        generate_roster(self.institutions, self.roster)

    def own_node_config(self, institution: int) -> dict:
        """What the operator of ``institution`` writes in its node config: its id, state folder,
        identity, and what it pins (``node_config``)."""
        return {
            "partition-id": institution,
            "state-dir": str(self.workdir / f"node-{institution}"),
            "roster": str(self.roster),
            "identity-keys": str(self.roster.with_name("roster.keys.json")),
            **self.node_config.get(institution, {}),
        }

    def start_node(self, institution: int) -> None:
        config = self.own_node_config(institution)
        text = " ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
        runtime = self.runtime_ports.setdefault(institution, free_port())
        isolation = []
        if self.warm:
            secret = self.certs / f"node-{institution}.exec-secret"
            if not secret.is_file():
                secret.touch(mode=0o600)
                secret.write_bytes(secrets.token_bytes(32))
            isolation = ["--isolation", "process", "--superexec-auth-secret-file", str(secret)]
        self._spawn(f"node-{institution}", [
            sys.executable, "-m", "securefed.flower.supernode", "--idle-poll",
            str(self.idle_poll_s), "--root-certificates", str(self.certs / "ca.crt"),
            "--superlink", f"127.0.0.1:{self.port}",
            "--auth-supernode-private-key", str(self.certs / f"node-{institution}"),
            "--node-config", text, "--port", str(runtime), *isolation])  # fmt: skip
        if self.warm and f"warm-{institution}" not in self.processes:
            self._spawn(f"warm-{institution}", [
                sys.executable, "-m", "securefed.flower.warm_node", "--insecure",
                "--runtime-api-address", f"127.0.0.1:{runtime}",
                "--superexec-auth-secret-file", isolation[-1]])  # fmt: skip

    def kill_node(self, institution: int, executor: bool = True) -> None:
        """SIGKILL a SuperNode and everything it started (its ClientApp included) and, unless
        ``executor`` is false, its warm executor too."""
        for name in (f"node-{institution}", f"warm-{institution}"):
            if name in self.processes and (executor or name.startswith("node-")):
                process = self.processes.pop(name)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def restart_node(self, institution: int, timeout_s: float = 300.0) -> None:
        """Start a killed SuperNode again, as a supervisor would (systemd's
        ``Restart=on-failure``): Flower refuses to activate a node key that the SuperLink
        still holds as online (until two missed heartbeats, about a minute), so retry."""
        log = self.workdir / f"node-{institution}.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            activated = log.read_text(errors="replace").count("SuperNode ID:")
            self.start_node(institution)
            process = self.processes[f"node-{institution}"]
            while process.poll() is None:
                if log.read_text(errors="replace").count("SuperNode ID:") > activated:
                    return
                time.sleep(0.5)
            self.processes.pop(f"node-{institution}")
            time.sleep(2.0)
        raise DeploymentError(f"node {institution} not back after {timeout_s:.0f} s; see {log}")

    def stop(self) -> None:
        self._close_control()
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    # ---- runs ----------------------------------------------------------------------------------
    def launch(self, run_config: dict, app_dir: Path = APP_DIR, *extra: str) -> int:
        """``flwr run`` the app with ``run_config`` overrides; returns the run id."""
        overrides = self.workdir / "run-config.toml"
        overrides.write_text(tomli_w.dumps(run_config))
        out = self.flwr("run", str(app_dir), CONNECTION, "--run-config", str(overrides),
                        "--format", "json", *extra)  # fmt: skip
        return int(json.loads(out[out.index("{") :])["run-id"])

    def status(self, run_id: int) -> str:
        """The run's status as ``flwr ls`` prints it (``running``, ``finished:completed``...),
        asked over the SuperLink's Control API from this process: a ``flwr`` call is a fresh
        Python process of 1-2 CPU-s, which waiting on a run paid at every poll, beside it.

        Asking is a read, so a transient failure is asked again, on a fresh connection, up to
        ``STATUS_ATTEMPTS`` times: the SuperLink may close the kept-alive connection just as a
        poll goes out ("Server disconnected without sending a response", which once ended a
        healthy CI run), a loaded machine may time a request out, and a SuperLink answers 5xx
        to an exception of its own (a busy state database) or before its state is ready."""
        for attempt in range(1, STATUS_ATTEMPTS + 1):
            try:
                response = self._control_client().ListRuns(ListRunsRequest(run_id=run_id))
                break
            except httpx.HTTPError as exc:
                self._close_control()
                if attempt == STATUS_ATTEMPTS or not _transient(exc):
                    raise
                time.sleep(0.2 * attempt)
        status = run_from_proto(response.run_dict[run_id]).status
        return f"{status.status}:{status.sub_status}" if status.sub_status else status.status

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None

    def _control_client(self) -> ControlHttpClient:
        """A client of the SuperLink's Control API with the ``flwr`` CLI's own interceptors
        (this federation has no account authentication)."""
        if self._control is None:
            self._control = ControlHttpClient.from_server_address(
                server_address=f"127.0.0.1:{self.port}",
                insecure=self.insecure,
                root_certificates=None if self.insecure else str(self.certs / "ca.crt"),
                interceptors=[
                    CliClientHttpInterceptor(),
                    RuntimeVersionHttpInterceptor(component_name="flwr CLI"),
                ],
            )
        return self._control

    def wait(self, run_id: int, timeout_s: float, poll_s: float = 0.5) -> str:
        """Block until the run finishes; ``DeploymentError`` with its log unless it completed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status(run_id)
            if status.startswith("finished"):
                if status != "finished:completed":
                    raise DeploymentError(f"run {run_id} {status}:\n{self.log(run_id)}")
                return status
            time.sleep(poll_s)
        raise DeploymentError(
            f"run {run_id} still running after {timeout_s:.0f} s:\n{self.log(run_id)}"
        )

    def log(self, run_id: int) -> str:
        """The server's log of the run, for an error message: whatever ``flwr log`` printed,
        never an error of its own that would hide the one being reported."""
        try:
            return self.flwr("log", str(run_id), CONNECTION, "--show", check=False)
        except DeploymentError as exc:
            return f"(no log: {exc})"

    def flwr(self, *args: str, check: bool = True) -> str:
        """Run the ``flwr`` CLI against this federation's SuperLink (never retried: ``run`` and
        ``supernode register`` change the SuperLink's state)."""
        try:
            result = subprocess.run(
                ["flwr", *args],
                env=_environment(self.workdir / "flwr-home" / "cli"),
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            command = f"flwr {' '.join(args)}"
            raise DeploymentError(f"{command} still running after {exc.timeout:.0f} s") from exc
        if check and result.returncode != 0:
            raise DeploymentError(f"flwr {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    # ---- internals -----------------------------------------------------------------------------
    def _write_cli_config(self, insecure: bool = False) -> None:
        self.insecure = insecure
        home = self.workdir / "flwr-home" / "cli"
        home.mkdir(parents=True, exist_ok=True)
        connection: dict = {"address": f"127.0.0.1:{self.port}"}
        if insecure:
            connection["insecure"] = True
        else:
            connection["root-certificates"] = str(self.certs / "ca.crt")
        config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
        (home / "config.toml").write_text(tomli_w.dumps(config))

    def _spawn(self, name: str, command: list[str], **extra_env: str) -> None:
        home = self.workdir / "flwr-home" / name
        home.mkdir(parents=True, exist_ok=True)
        env = _environment(home, self.threads)
        env[STATE_DIR_ENV] = str(self.workdir)
        env.update(extra_env)
        if shutil.which(command[0], path=env["PATH"]) is None:
            raise DeploymentError(f"{command[0]} not found: is flwr installed in this Python?")
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.processes[name] = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home, start_new_session=True
        )

    def _wait_superlink(self, timeout_s: float = SUPERLINK_START_S, tls: bool = True) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/health"
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt")) if tls else False
        while time.monotonic() < deadline:
            if self.processes["superlink"].poll() is not None:
                raise DeploymentError(f"flower-superlink exited; see {self.workdir}/superlink.log")
            try:
                if httpx.get(url, verify=context, timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise DeploymentError(f"flower-superlink not ready after {timeout_s} s")


class LocalSimulation(LocalFederation):
    """Flower's simulation engine: one SuperLink in simulation mode runs the ServerApp and
    every ClientApp (in Ray actors) on this machine; ``launch`` takes the number of nodes.

    Loopback only and without TLS: no node connects to it. Flower's simulated node config
    holds only the partition id, so each node's own keys (what it pins, its identity, its
    state folder) go to ``node-<id>.toml`` in ``workdir/node-config``, which the simulated
    nodes read through ``$SECUREFED_NODE_CONFIG_DIR`` (``node.node_config_of``).
    """

    def start(self) -> None:
        self._write_cli_config(insecure=True)
        self.certs.mkdir(parents=True, exist_ok=True)
        self._make_identities()
        folder = self.workdir / "node-config"
        folder.mkdir(parents=True, exist_ok=True)
        for institution in self.institutions:
            own = self.own_node_config(institution)
            (folder / f"node-{institution}.toml").write_text(tomli_w.dumps(own))
        self._spawn("superlink", ["flower-superlink", "--insecure", "--simulation",
                                  "--disable-runtime-dependency-installation",
                                  "--host", "127.0.0.1", "--port", str(self.port)],
                    **{NODE_CONFIG_DIR_ENV: str(folder)})  # fmt: skip
        self._wait_superlink(tls=False)

    def launch(self, run_config: dict, app_dir: Path = APP_DIR, *extra: str) -> int:
        nodes = f"num-supernodes={len(self.institutions)} client-resources-num-cpus=1"
        return super().launch(run_config, app_dir, "--federation-config", nodes, *extra)
