"""The round loop's transport over Flower: clients are nodes, reached through a ``Grid``.

    join                  every connected node learns the resolved config, answers its id
    train_and_aggregate   one ``server_round.secure_round`` (advertise with local training,
                          share keys, masked input, unmask) over the sampled institutions
    deliver               each node evaluates the final adapter on its own test split

Each node keeps its own privacy ledger: the outcome the server records has no epsilon and no
ledger. Operators (and tests) follow the stages in ``flower/progress.jsonl``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.serverapp import Grid

from securefed.config import RunConfig, dump_config
from securefed.errors import NoInstitutionJoined
from securefed.flower import wire
from securefed.flower.exchange import exchange
from securefed.flower.server_round import Timeouts, secure_round
from securefed.privacy.institution import InstitutionPrivacy
from securefed.run.aggregation import AggregateResult
from securefed.run.federation import RoundOutcome

Note = Callable[[dict], None]


def progress_note(path: Path) -> Note:
    """Append each event, timestamped, to the server's progress log."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def note(event: dict) -> None:
        with open(path, "a") as handle:
            handle.write(json.dumps({"t": time.time(), **event}) + "\n")

    return note


@dataclass
class FlowerTransport:
    """``Transport`` over Flower messages; ``nodes`` maps institution -> node id."""

    grid: Grid
    cfg: RunConfig
    nodes: dict[int, int]
    timeouts: Timeouts
    note: Note
    spec_hash: str  # the vector spec every node's adapter must have
    final_evaluation: bool = True  # deliver: each node evaluates the final adapter
    institution: InstitutionPrivacy | None = None  # distributed DP's plan and ledger
    unresponsive: frozenset[int] = frozenset()  # timed out or failed in the last round

    def train_and_aggregate(
        self, round_index: int, sampled: list[int], global_vector: np.ndarray
    ) -> RoundOutcome:
        result = secure_round(
            self.grid,
            self.cfg,
            round_index,
            sampled,
            self.nodes,
            global_vector,
            self.spec_hash,
            self.timeouts,
            self.note,
            self.institution,
        )
        self.unresponsive = result.unresponsive
        self.note({"round": round_index, "stage": "done", "aborted": result.aborted})
        aggregate = AggregateResult(
            result.mean_delta,
            result.survivors,
            result.mean_train_loss,
            result.transcript,
            result.bytes_per_client,
            result.aborted,
        )
        # each node keeps its own sample-level ledger (filed here by collect_node_records); the
        # server keeps only the institution-level one (distributed DP), which counts the noise
        # shares it summed: the file has the contract's shape with the nodes' part still empty
        ledgers = None
        if self.institution is not None:
            ledgers = {
                "dp_enabled": None,
                "accountant": None,
                "noise_multipliers": {},
                "ledgers": {},
                "source": "nodes",
                "institution": self.institution.to_json(),
            }
        return RoundOutcome(aggregate, result.budget_stopped, {}, ledgers, result.stage_wall_s)

    def deliver(self, global_vector: np.ndarray) -> float:
        if not self.final_evaluation:
            return 0.0
        bodies = {
            node: wire.content({"round": self.cfg.training.rounds}, global_vector)
            for inst, node in self.nodes.items()
            if inst not in self.unresponsive
        }  # a node that timed out in the last round is gone
        return exchange(
            self.grid,
            wire.FINAL,
            bodies,
            group_id="final",
            timeout_s=self.timeouts.train_s,
            poll_s=self.timeouts.poll_s,
        ).wall_s


def join_nodes(
    grid: Grid,
    cfg: RunConfig,
    min_nodes: int,
    join_timeout_s: float,
    poll_s: float,
    note: Note,
) -> dict[int, int]:
    """Wait for the nodes, send them the config; institution id -> node id of those that join."""
    expected = min_nodes or cfg.partition.num_clients
    deadline = time.perf_counter() + join_timeout_s
    while len(list(grid.get_node_ids())) < expected and time.perf_counter() < deadline:
        time.sleep(poll_s)
    text = dump_config(cfg)
    joined = exchange(
        grid,
        wire.JOIN,
        {n: wire.content({"config_yaml": text}) for n in grid.get_node_ids()},
        group_id="join",
        timeout_s=max(1.0, deadline - time.perf_counter()),
        poll_s=poll_s,
    )
    claims: dict[int, list[int]] = {}
    refused: dict[str, str] = {}
    for node, reply in joined.replies.items():
        fields = wire.fields_of(reply)
        if "refused" in fields:  # the node's pinned security settings differ from the run's
            refused[str(node)] = str(fields["refused"])
            continue
        institution = int(fields["institution"])
        if 0 <= institution < cfg.partition.num_clients:
            claims.setdefault(institution, []).append(node)
    nodes = {inst: ids[0] for inst, ids in sorted(claims.items()) if len(ids) == 1}
    conflicts = {str(inst): ids for inst, ids in claims.items() if len(ids) > 1}
    note(
        {
            "stage": "join",
            "institutions": {str(i): n for i, n in nodes.items()},
            "conflicting_claims": conflicts,
            "refused": refused,
            "failed": {str(n): r for n, r in joined.failed.items()},
        }
    )
    if not nodes:  # rounds without a single institution would "complete" and train nothing
        reasons = {**refused, **{str(n): r for n, r in joined.failed.items()}}
        raise NoInstitutionJoined(
            "no node joined the run"
            + "".join(f"\n  node {n}: {why}" for n, why in sorted(reasons.items()))
            + ("" if reasons else " (none answered the join message)")
        )
    return nodes
