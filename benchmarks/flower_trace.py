"""Where a Flower round's time goes: every HTTP request and sleep of every process, and the
CPU each process used, stage by stage.

``traced(folder)`` wraps a local federation (``LocalFederation``): each Python process it
starts (SuperLink, SuperExec, ServerApp, SuperNodes, warm executors, ``flwr`` CLI calls)
imports this module at start-up (a ``sitecustomize`` on ``PYTHONPATH``) and logs, to
``folder/<pid>.jsonl``, each ``httpx`` request it sends (path, start, duration, bytes) and
each ``time.sleep`` (start, duration); a thread of the calling process samples every child's
CPU time (``psutil``) every 0.2 s. ``breakdown`` then cuts one round of the server's
``flower/progress.jsonl`` into its stages and reports, per stage and per kind of process,
the requests sent (count, wall), the time slept and the CPU used. Counts and CPU seconds
are what a stage costs whatever the machine's load; request wall times are not.

    with traced(folder) as samples:
        ... run a LocalFederation ...
    print(report(breakdown(folder, samples, progress, round_index=1)))

Used by ``benchmarks/flower_round.py --trace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

TRACE_DIR_ENV = "SECUREFED_FLOWER_TRACE_DIR"
_SITE = "import flower_trace\nflower_trace.install()\n"


def install() -> None:
    """In a traced process: log each httpx request and each ``time.sleep`` to its file."""
    folder = os.environ.get(TRACE_DIR_ENV)
    if not folder:
        return
    import httpx  # the process would import it anyway: every Flower component talks HTTP

    out = open(Path(folder) / f"{os.getpid()}.jsonl", "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()

    def write(record: dict) -> None:
        with lock:
            out.write(json.dumps(record) + "\n")

    argv = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")
    write({"kind": "start", "t": time.time(), "argv": argv})  # sys.argv is not set yet
    sleep, send = time.sleep, httpx.Client.send

    def traced_sleep(seconds: float) -> None:
        started = time.time()
        sleep(seconds)
        write({"kind": "sleep", "t": started, "d": time.time() - started, "s": seconds})

    def traced_send(client, request, *args, **kwargs):
        started = time.time()
        response = send(client, request, *args, **kwargs)
        write({"kind": "http", "t": started, "d": time.time() - started,
               "path": request.url.path.rsplit("/", 1)[-1], "up": len(request.content or b""),
               "down": len(response.content)})  # fmt: skip
        return response

    time.sleep = traced_sleep
    httpx.Client.send = traced_send


def component(argv: list[str]) -> str:
    """Which Flower component a process is, from its command line."""
    line = " ".join(argv)
    for marker, name in (
        ("warm_node", "executor"),
        ("securefed.flower.supernode", "supernode"),
        ("flwr-serverapp", "serverapp"),
        ("flower-superexec", "superexec"),
        ("flower-superlink", "superlink"),
        ("flwr", "flwr CLI"),
    ):
        if marker in line:
            return name
    return "other"


@contextlib.contextmanager
def traced(folder: Path) -> Iterator[list[tuple[float, int, str, float]]]:
    """Trace every Python process started inside; yields the CPU samples (time, pid,
    component, CPU seconds so far), filled until the block ends."""
    import psutil

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site").mkdir(exist_ok=True)
    (folder / "site" / "sitecustomize.py").write_text(_SITE)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", TRACE_DIR_ENV)}
    path = [str(folder / "site"), str(Path(__file__).parent), saved["PYTHONPATH"] or ""]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    os.environ[TRACE_DIR_ENV] = str(folder)
    samples: list[tuple[float, int, str, float]] = []
    stop = threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not stop.wait(0.2):
            now = time.time()
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    cpu = child.cpu_times()
                    name = component(child.cmdline())
                    samples.append((now, child.pid, name, cpu.user + cpu.system))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cpu_at(samples: list[tuple[float, int, str, float]], t: float) -> dict[int, float]:
    """Each process's CPU seconds at its last sample before ``t``."""
    out: dict[int, float] = {}
    for when, pid, _, cpu in samples:
        if when <= t:
            out[pid] = cpu
    return out


def breakdown(folder: Path, samples: list, progress: Path, round_index: int) -> list[dict]:
    """One row per stage of ``round_index``: its wall time and, per component, requests
    (count, wall s), sleeps (count, s) and CPU s within it."""
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    marks = [(e["stage"], e["t"]) for e in events if e.get("round") == round_index]
    names = {pid: name for _, pid, name, _ in samples}
    records: list[tuple[str, dict]] = []
    for path in folder.glob("*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line]
        names[int(path.stem)] = name = component(lines[0]["argv"])
        records.extend((name, r) for r in lines[1:])
    rows = []
    for (_, start), (stage, end) in zip(marks, marks[1:], strict=False):
        before, after = _cpu_at(samples, start), _cpu_at(samples, end)
        row: dict = {"stage": stage, "wall_s": end - start, "by": {}}
        by: dict = defaultdict(lambda: {"requests": 0, "request_s": 0.0, "paths": defaultdict(int),
                                        "sleeps": 0, "sleep_s": 0.0, "cpu_s": 0.0})  # fmt: skip
        for name, r in records:
            if not start <= r["t"] < end:
                continue
            if r["kind"] == "http":
                by[name]["requests"] += 1
                by[name]["request_s"] += r["d"]
                by[name]["paths"][r["path"]] += 1
            elif r["kind"] == "sleep":
                by[name]["sleeps"] += 1
                by[name]["sleep_s"] += r["d"]
        for pid, cpu in after.items():
            by[names.get(pid, "other")]["cpu_s"] += cpu - before.get(pid, 0.0)
        row["by"] = {k: {**v, "paths": dict(v["paths"])} for k, v in by.items()}
        rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    """A table: per stage, per component, requests (count/s), sleeps (count/s), CPU s."""
    lines = []
    for row in rows:
        total_cpu = sum(v["cpu_s"] for v in row["by"].values())
        lines.append(f"{row['stage']}: {row['wall_s']:.2f} s wall, {total_cpu:.2f} CPU-s in all")
        for name, v in sorted(row["by"].items()):
            paths = ", ".join(f"{p} {n}" for p, n in sorted(v["paths"].items()))
            lines.append(
                f"  {name:10s} cpu {v['cpu_s']:5.2f} s | {v['requests']:3d} requests "
                f"{v['request_s']:5.2f} s | {v['sleeps']:3d} sleeps {v['sleep_s']:5.2f} s | {paths}"
            )
    return "\n".join(lines)
