"""A round on Flower (localhost, every component its own process) against the same round in
process (``securefed simulate``), broken down by stage.

Both run the same config and seed for two rounds; round 0 loads the model on every node, so
"a round" is round 1, where a warm node (``securefed.flower.warm_node``) has everything
loaded. The breakdown of the Flower round:

- process start: once per node life with warm nodes (the executor importing the ClientApp),
  measured here as a fresh ``python -c "import securefed.flower.warm_node"``; with
  ``--cold`` (Flower's default, a fresh process per message) it is paid by every message;
- model load: building each node's model and data in round 0 (``load_s`` of the node's
  round-0 ``advertise`` record), mean over nodes; a warm node's round 1 loads nothing;
- train: each node's round-1 ``advertise`` (evaluate, train, encode, keys) less any model
  load, mean over nodes;
- protocol: the server's wall time of the stages after ``advertise`` in round 1 (message
  delivery, polling and each node's answer), and of it the slowest node's own answer time
  per stage (its records' ``wall_s``): the rest is delivery;
- server: the rest of the server's round 1 (the global step, evaluation, records).

Evaluation: the in-process round evaluates the global adapter once, on the pooled test set
(every institution's test split). On Flower each node evaluates it on its own test split
in its ``advertise`` answer (together: that pooled test set), and the ServerApp evaluates it
again on the pooled test set only with ``server-evaluation`` on, which needs a coordinator
that holds every institution's data (a synthetic task). So by default the Flower arm runs
with ``server-evaluation=false``, the same evaluation work as the in-process round, as a
deployment whose coordinator has no data runs; ``--server-evaluation`` adds the second one.

    nice python benchmarks/flower_round.py --nodes 3 10 [--set KEY=VALUE ...] [--cold]
        [--idle-poll SECONDS] [--repeat N] [--trace] [--server-evaluation]

``--trace`` also breaks each Flower run's round 1 down by stage and by process (requests,
sleeps, CPU seconds: ``benchmarks/flower_trace.py``); it costs the traced processes a little.

Prints one block per run (``--repeat`` runs of each arm, alternating) and, last,
``flower/in-process round: <ratio>x``, the median over the runs, for the
first node count (the goal: at most 1.5x with 3 nodes for the default encoder). Results are
also appended to ``--out`` (JSON lines) as they come.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flower_trace import breakdown, report, traced

from securefed.config import load_config
from securefed.flower.localhost import LocalFederation
from securefed.flower.node_security import pinned_node_config
from securefed.flower.supernode import IDLE_POLL_S
from securefed.run.folder import FLOWER_PROGRESS, RunFolder, read_json
from securefed.secagg import STAGE_TABLE

ROUNDS = ["training.rounds=2", "baselines=[]"]


def _overrides(nodes: int, sets: list[str]) -> list[str]:
    return [f"partition.num_clients={nodes}", f"training.clients_per_round={nodes}", *ROUNDS, *sets]


def in_process(config: str | None, overrides: list[str], workdir: Path) -> float:
    """The in-process round 1 wall time (``securefed simulate``'s own record), run as its own
    process so that its model is not held in memory beside the Flower arm's (an LLM's is GBs)."""
    run_dir = workdir / "sim"
    command = [str(Path(sys.executable).parent / "securefed"), "simulate", "--quiet",
               "--out", str(run_dir), *([config] if config else [])]  # fmt: skip
    for override in overrides:
        command += ["--set", override]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return RunFolder(run_dir).read_metrics()[1]["wall_s"]


def on_flower(
    config: str | None,
    overrides: list[str],
    workdir: Path,
    warm: bool,
    idle_poll_s: float,
    trace: bool = False,
    server_evaluation: bool = False,
) -> dict:
    """One Flower run on localhost; the round-1 breakdown from the server's and nodes' records
    (and, with ``trace``, from every process's requests, sleeps and CPU)."""
    cfg = load_config(config, overrides)
    nodes = cfg.partition.num_clients
    pinned = {i: pinned_node_config(cfg) for i in range(nodes)}
    run_dir = workdir / "run"
    with (
        traced(workdir / "trace") if trace else contextlib.nullcontext([]) as samples,
        LocalFederation(
            workdir / "fed", list(range(nodes)), node_config=pinned, warm=warm,
            idle_poll_s=idle_poll_s) as fed,
    ):  # fmt: skip
        run_id = fed.launch(
            {
                "config": config or "",
                "overrides": "; ".join(overrides),
                "run-dir": str(run_dir),
                "poll-interval": 0.1,
                "final-evaluation": False,
                "server-evaluation": server_evaluation,
            }  # fmt: skip
        )
        fed.wait(run_id, timeout_s=3600, poll_s=0.5)
    server = RunFolder(run_dir).read_metrics()[1]
    advertise = STAGE_TABLE[0].name
    train: list[float] = []  # round 1
    load: list[float] = []
    traffic: dict[str, list[tuple[int, int]]] = {}  # stage -> (down, up) per node, round 1
    answer: dict[str, list[float]] = {}  # stage -> each node's own time on it, round 1
    for i in range(nodes):
        for record in RunFolder(workdir / "fed" / f"node-{i}" / f"run-{run_id}").read_metrics():
            if record.get("stage") == advertise:  # training: the exchange less any load
                if record["round"] == 1:
                    train.append(record["wall_s"] - record["load_s"])
                else:
                    load.append(record["load_s"])
            if record["round"] == 1 and "bytes_up" in record:
                traffic.setdefault(record["stage"], []).append(
                    (record["bytes_down"], record["bytes_up"])
                )
                answer.setdefault(record["stage"], []).append(record["wall_s"])
    stages = server["stage_wall_s"]
    protocol = sum(s for name, s in stages.items() if name != advertise)
    return {
        "round_s": server["wall_s"],
        "model_load_s": sum(load) / len(load),  # building the node's model and data, round 0
        "train_s": sum(train) / len(train),
        "advertise_exchange_s": stages[advertise],
        "protocol_s": protocol,
        "server_s": server["wall_s"] - sum(stages.values()),
        "stages_s": stages,
        "protocol_answers_s": sum(max(v) for stage, v in answer.items() if stage != advertise),
        "bytes_per_node": {  # mean (down, up) per node and stage, round 1
            stage: [sum(d for d, _ in v) / len(v), sum(u for _, u in v) / len(v)]
            for stage, v in traffic.items()
        },
        "degree": read_json(run_dir / "secagg" / "round-0001.json")["degree"],
        "trace": breakdown(workdir / "trace", samples, run_dir / FLOWER_PROGRESS, 1)
        if trace
        else None,
    }


def process_start_s() -> float:
    """A fresh process that imports what the ClientApp needs (Python, Flower, securefed)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import securefed.flower.warm_node"], check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config", type=lambda p: str(Path(p).resolve()),
                        help="securefed YAML (default: the embedded default)")  # fmt: skip
    parser.add_argument("--cold", action="store_true", help="a process per message (Flower's)")
    parser.add_argument("--idle-poll", type=float, default=IDLE_POLL_S,
                        help="a SuperNode's idle pull interval, s (Flower's own: 3)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each arm per node count (median ratio)")  # fmt: skip
    parser.add_argument("--trace", action="store_true", help="round 1 by stage and process")
    parser.add_argument("--server-evaluation", action="store_true",
                        help="the ServerApp evaluates too (a second evaluation)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/flower_round.jsonl"))
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ratios: dict[int, list[float]] = {}
    for nodes in args.nodes:
        for _ in range(args.repeat):
            ratios.setdefault(nodes, []).append(_pair(args, nodes))
        if args.repeat > 1:
            runs = ", ".join(f"{r:.2f}x" for r in ratios[nodes])
            median = statistics.median(ratios[nodes])
            print(f"{nodes} nodes: median {median:.2f}x of {runs}", flush=True)
    print(f"flower/in-process round: {statistics.median(ratios[args.nodes[0]]):.2f}x")


def _pair(args: argparse.Namespace, nodes: int) -> float:
    """One in-process run and one Flower run of the same config; the ratio of their round 1."""
    overrides = _overrides(nodes, args.set)
    with tempfile.TemporaryDirectory(prefix="flower-round-") as tmp:
        print(f"--- {nodes} nodes: in process ...", flush=True)
        inproc = in_process(args.config, overrides, Path(tmp))
        print(f"in-process round: {inproc:.2f} s; on Flower ...", flush=True)
        flower = on_flower(
            args.config, overrides, Path(tmp), not args.cold, args.idle_poll, args.trace,
            args.server_evaluation,
        )  # fmt: skip
    start = process_start_s()
    row = {"nodes": nodes, "warm": not args.cold, "idle_poll_s": args.idle_poll,
           "server_evaluation": args.server_evaluation,
           "in_process_round_s": inproc,
           "process_start_s": start, **flower, "ratio": flower["round_s"] / inproc}  # fmt: skip
    with args.out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    per = "per node life" if not args.cold else "per message"
    print(
        f"flower round {flower['round_s']:.2f} s = advertise exchange "
        f"{flower['advertise_exchange_s']:.2f} s (node: train {flower['train_s']:.2f} s) + "
        f"protocol {flower['protocol_s']:.2f} s + server {flower['server_s']:.2f} s; "
        f"model load {flower['model_load_s']:.2f} s ({'every' if args.cold else 'round 0'}"
        " advertise); "
        f"process start {start:.2f} s ({per})",
        flush=True,
    )
    if flower["trace"] is not None:
        print(report(flower["trace"]), flush=True)
    answers = flower["protocol_answers_s"]
    print(f"protocol: of it the slowest node's answers {answers:.2f} s", flush=True)
    print(f"{nodes} nodes: flower/in-process round {row['ratio']:.2f}x", flush=True)
    return row["ratio"]


if __name__ == "__main__":
    main()
