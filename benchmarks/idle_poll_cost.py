"""What a short SuperNode idle poll costs the SuperLink: its CPU while every node is idle.

Starts a local federation (``LocalFederation``: TLS, node authentication, no run) with
``--nodes`` SuperNodes, once polling every ``--idle-poll`` seconds (securefed's SuperNode) and
once every 3 s (Flower's own), and reads the SuperLink process's CPU time (``/proc``, Linux)
over ``--seconds`` of idle time in each. Each node's pulls are counted from its poll
interval (one authenticated ``PullMessage`` per interval, plus the time a pull takes), so the
marginal CPU of a pull (the difference of the two loads over the difference of the pull
rates) and the SuperLink's load at N nodes follow.

    nice python benchmarks/idle_poll_cost.py --nodes 10 --seconds 60

Prints one line per poll interval and, last, ``idle superlink CPU, 0.2 s / 3 s poll: <ratio>x``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from securefed.flower.localhost import LocalFederation
from securefed.flower.supernode import IDLE_POLL_S, IDLE_SLEEP


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of one process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_superlink_cpu(nodes: int, idle_poll_s: float, seconds: float, settle_s: float) -> float:
    """The SuperLink's CPU seconds per wall second while ``nodes`` idle nodes poll it."""
    with (
        tempfile.TemporaryDirectory(prefix="idle-poll-") as tmp,
        LocalFederation(Path(tmp), list(range(nodes)), warm=False, idle_poll_s=idle_poll_s) as fed,
    ):
        logs = [fed.workdir / f"node-{i}.log" for i in range(nodes)]
        deadline = time.monotonic() + 300
        while not all("SuperNode ID:" in log.read_text(errors="replace") for log in logs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not connected after 300 s; see {tmp}")
            time.sleep(1.0)
        time.sleep(settle_s)  # the nodes' own start-up calls are over
        pid = fed.processes["superlink"].pid
        cpu, wall = _cpu_s(pid), time.monotonic()
        time.sleep(seconds)
        return (_cpu_s(pid) - cpu) / (time.monotonic() - wall)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--idle-poll", type=float, default=IDLE_POLL_S, help="seconds")
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time measured")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before measuring")
    args = parser.parse_args(argv)
    load = {}
    for poll in (args.idle_poll, IDLE_SLEEP.seconds):
        load[poll] = idle_superlink_cpu(args.nodes, poll, args.seconds, args.settle)
        pulls = args.nodes / poll  # an upper bound: each pull also takes its own time
        print(
            f"{args.nodes} idle nodes polling every {poll} s: SuperLink "
            f"{100 * load[poll]:.1f}% of a core, {1000 * load[poll] / pulls:.2f} CPU-ms a pull "
            f"(<= {pulls:.0f} pulls/s)",
            flush=True,
        )
    extra_pulls = args.nodes / args.idle_poll - args.nodes / IDLE_SLEEP.seconds
    extra_cpu = load[args.idle_poll] - load[IDLE_SLEEP.seconds]
    print(f"marginal SuperLink CPU per extra pull: {1000 * extra_cpu / extra_pulls:.2f} ms")
    ratio = load[args.idle_poll] / load[IDLE_SLEEP.seconds]
    print(f"idle superlink CPU, {args.idle_poll} s / {IDLE_SLEEP.seconds} s poll: {ratio:.2f}x")


if __name__ == "__main__":
    main()
