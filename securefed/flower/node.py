"""What one institution's node holds: its identity, its data shard, its ledger, its records.

A SuperNode is started with a node config (``flower-supernode --node-config``)::

    partition-id = 2                       # the institution id (secure-aggregation client id)
    data-path    = "/data/shard.jsonl"     # optional: this institution's own file
    state-dir    = "/var/lib/securefed"    # optional: ledger and records (default below)
    identity-keys = "/etc/securefed/me.keys.json"   # optional: Ed25519 identity (with a roster)
    roster        = "/etc/securefed/roster.json"    # optional: overrides the config's path
    keep-updates  = true                   # optional: keep each unmasked update on this node

The default ``state-dir`` is ``$SECUREFED_STATE_DIR/node-<id>`` (``~/.securefed/node-<id>``
when unset); Flower's simulation engine, whose node config holds only the partition id,
uses it. Without ``data-path`` the node builds the run's partition from the config and keeps
shard ``partition-id`` (the synthetic tasks, and tests); with it, the whole file is this
institution's data, split into its own train and test parts. The ledger and a hash-chained
record of every round stay in ``state-dir/run-<run id>/`` on the node: the server never
receives them. ``keep-updates`` also keeps the node's own unmasked update of each round
(``updates/round-NNNN.safetensors``) so the institution can check what it contributed to the
aggregate; it is off by default, since that file is as sensitive as the update itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from securefed.config import RunConfig, dump_config, validate
from securefed.config_yaml import apply_overrides
from securefed.errors import ConfigError
from securefed.run.federation import fedavg_weight
from securefed.run.folder import CONFIG, RunFolder, read_json, write_json

DEFAULT_STATE_DIR = "~/.securefed"
STATE_DIR_ENV = "SECUREFED_STATE_DIR"  # root of the default state-dir (node-<id> below it)


@dataclass(frozen=True)
class NodeIdentity:
    """The node config, checked once per ClientApp call."""

    institution: int
    data_path: str | None
    state_dir: Path
    identity_keys: str | None
    roster: str | None
    keep_updates: bool = False

    @classmethod
    def from_node_config(cls, node_config: dict) -> NodeIdentity:
        if "partition-id" not in node_config:
            raise ConfigError("node-config.partition-id", None, "the institution id of this node")
        institution = int(node_config["partition-id"])
        if institution < 0:
            raise ConfigError("node-config.partition-id", institution, "an integer >= 0")
        text = {
            k: str(node_config[k]) if k in node_config else None
            for k in ("data-path", "identity-keys", "roster")
        }
        default = Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)) / f"node-{institution}"
        state_dir = Path(str(node_config.get("state-dir", default))).expanduser()
        keep = node_config.get("keep-updates", False)
        if not isinstance(keep, bool):
            raise ConfigError("node-config.keep-updates", keep, "true or false")
        return cls(
            institution, text["data-path"], state_dir, text["identity-keys"], text["roster"], keep
        )

    def records(self, run_id: int) -> RunFolder:
        """This node's own folder for one run."""
        folder = RunFolder(self.state_dir / f"run-{run_id}")
        folder.path.mkdir(parents=True, exist_ok=True)
        return folder


def local_config(cfg: RunConfig, identity: NodeIdentity) -> RunConfig:
    """The config this node trains under: the run's, with its own file as the whole dataset."""
    if identity.data_path is None:
        if identity.institution >= cfg.partition.num_clients:
            raise ConfigError(
                "node-config.partition-id",
                identity.institution,
                f"below partition.num_clients ({cfg.partition.num_clients})",
            )
        return cfg
    if cfg.training.weighting != "uniform":
        raise ConfigError(
            "training.weighting",
            cfg.training.weighting,
            "uniform when nodes bring their own data-path (the largest shard, "
            "which 'examples' weighting divides by, is unknown to each node)",
        )
    raw = cfg.model_dump(mode="json")
    return validate(
        apply_overrides(
            raw,
            [
                f"task.path={identity.data_path}",
                "partition.scheme=iid",
                "partition.num_clients=1",
                "training.clients_per_round=1",
                "secure_aggregation.enabled=false",
            ],
        )
    )


class NodeLocal:
    """The node's data and model for one ClientApp call (built from the config each time)."""

    def __init__(self, cfg: RunConfig, identity: NodeIdentity) -> None:
        from securefed.run.setup import build_setup  # lazy: torch stays out of protocol-only calls

        self.cfg = cfg
        self.identity = identity
        self.setup = build_setup(local_config(cfg, identity))
        self.index = 0 if identity.data_path is not None else identity.institution

    @property
    def train_size(self) -> int:
        return len(self.setup.client_train[self.index])

    def weight(self) -> float:
        """FedAvg weight in (0, 1], as ``securefed simulate`` computes it."""
        largest = max(len(t) for t in self.setup.client_train)
        return fedavg_weight(self.cfg, self.train_size, largest)

    def evaluate(self, vector: np.ndarray) -> dict:
        """Metrics of ``vector`` on this institution's own test split."""
        from securefed.model.adapters import set_vector  # lazy: torch, as above
        from securefed.model.training import labels_of, predict  # lazy: torch, as above

        set_vector(self.setup.bundle.model, vector, self.setup.bundle.spec)
        test = self.setup.client_test[self.index]
        preds = predict(self.setup.scorer, test, self.cfg.training.eval_batch_size)
        return self.setup.task.metrics(labels_of(test), preds)


class NodeLedger:
    """This institution's privacy ledger, kept in ``ledger.json`` in the node's run folder.

    Wraps ``ClientPrivacy`` (the same noise plan and ledger as ``securefed simulate``); the
    file holds this institution's entry only, under its institution id.
    """

    FILE = "ledger.json"

    def __init__(self, local: NodeLocal, folder: RunFolder) -> None:
        from securefed.privacy.budget import ClientPrivacy  # lazy: dp_accounting (scipy), as above

        setup = local.setup
        self.local, self.folder = local, folder
        self.privacy = ClientPrivacy(
            setup.cfg,
            [len(d) for d in setup.client_train],
            [setup.local_steps(c) for c in range(setup.num_clients)],
            rounds=local.cfg.training.rounds,
        )
        path = folder.file(self.FILE)
        if path.is_file():
            self.privacy.restore(
                self._rekey(read_json(path), local.identity.institution, local.index)
            )

    @staticmethod
    def _rekey(saved: dict, old: int, new: int) -> dict:
        """``saved`` with client ``old``'s entries only, filed (and labelled) as ``new``."""
        out = dict(saved)
        out["noise_multipliers"] = {
            str(new): v for k, v in saved["noise_multipliers"].items() if int(k) == old
        }
        out["ledgers"] = {
            str(new): {**v, "client_id": new} for k, v in saved["ledgers"].items() if int(k) == old
        }
        return out

    def save(self) -> None:
        own = self._rekey(self.privacy.to_json(), self.local.index, self.local.identity.institution)
        write_json(self.folder.file(self.FILE), own)

    def epsilon(self) -> float:
        return self.privacy.epsilons()[str(self.local.index)]


def save_run_config(folder: RunFolder, cfg: RunConfig) -> None:
    """Keep the config the server sent, so the node's record says what it agreed to run."""
    path = folder.file(CONFIG)
    if not path.is_file():
        path.write_text(dump_config(cfg))
