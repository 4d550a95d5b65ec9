"""``securefed simulate``: one run folder from a config, or the continuation of one (--resume)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import platform
from pathlib import Path

from securefed.adapters import base_weights_hash
from securefed.config import RunConfig, dump_config, load_config
from securefed.dp_budget import ClientPrivacy
from securefed.energy import EnergyMeter, record_energy
from securefed.errors import RunFolderError
from securefed.federation import FederationState, run_federation
from securefed.parallel_baselines import BackgroundBaselines
from securefed.progress import Progress
from securefed.run_folder import RunFolder, read_json, write_json
from securefed.run_setup import RunSetup, build_setup

LIBRARIES = (
    "securefed",
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "opacus",
    "dp-accounting",
    "cryptography",
    "flwr",
    "datasets",
    "numpy",
)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def new_run_dir(cfg: RunConfig, out: str | None) -> Path:
    if out is not None:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            raise RunFolderError(
                f"--out {path} exists and is not empty; pick a new folder "
                f"or continue it with --resume {path}"
            )
        return path
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(cfg.output.dir) / f"{cfg.name}-{stamp}"


def _privacy(setup: RunSetup) -> ClientPrivacy:
    return ClientPrivacy(
        setup.cfg,
        [len(d) for d in setup.client_train],
        [setup.local_steps(c) for c in range(setup.num_clients)],
    )


def simulate(
    cfg: RunConfig | None = None,
    out: str | None = None,
    resume: str | None = None,
    progress: Progress | None = None,
) -> tuple[Path, dict]:
    """Run (or resume) a simulation; returns the run folder and its results."""
    progress = progress or Progress(enabled=False)
    folder, cfg, saved_state = _open_folder(cfg, out, resume)
    with EnergyMeter() as meter:
        setup = build_setup(cfg)
        privacy = _privacy(setup)
        base_before = base_weights_hash(setup.bundle.model)
        state = _start_or_continue(setup, folder, saved_state, privacy, base_before)
        with BackgroundBaselines(setup, folder, progress) as background, progress:
            state = run_federation(setup, folder, state, privacy, progress)
            baselines = background.results()
        base_after = base_weights_hash(setup.bundle.model)
    energy = record_energy(folder.path, meter.report())
    results = _results(setup, state, baselines, privacy, base_before, base_after)
    results["timing"] = _timing(state, energy["total"], resumed=saved_state is not None)
    results["energy"] = energy["total"]
    write_json(folder.file("results.json"), results)
    return folder.path, results


def _open_folder(cfg: RunConfig | None, out: str | None, resume: str | None):
    """A new run folder holding the resolved config, or the folder of a run to continue."""
    if resume is not None:
        folder = RunFolder(resume)
        return folder, load_config(folder.file("config.yaml")), read_json(folder.file("state.json"))
    assert cfg is not None
    folder = RunFolder(new_run_dir(cfg, out))
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.file("config.yaml").write_text(dump_config(cfg))
    return folder, cfg, None


def _start_or_continue(
    setup: RunSetup,
    folder: RunFolder,
    saved_state: dict | None,
    privacy: ClientPrivacy,
    base_before: str,
) -> FederationState:
    """Write the run's fixed records (new run) or reload its last finished round (resume)."""
    cfg = setup.cfg
    if saved_state is None:
        write_json(
            folder.file("partition.json"), setup.partition.summary(list(setup.task.label_names))
        )
        write_json(
            folder.file("environment.json"),
            {
                "libraries": library_versions(),
                "platform": platform.platform(),
                "device": str(next(setup.bundle.model.parameters()).device),
                "backbone": cfg.model.backbone,
                "model_kind": setup.bundle.kind,
                "vector_spec": setup.bundle.spec.to_json(),
                "vector_spec_hash": setup.bundle.spec.hash,
                "base_weights_sha256": base_before,
                "task": {"name": setup.task.name, "synthetic": setup.task.synthetic},
            },
        )
        folder.save_adapter(
            folder.checkpoint_rel(None), setup.initial_vector, setup.bundle.spec.hash
        )
        write_json(
            folder.file("state.json"), {"next_round": 0, "checkpoint": folder.checkpoint_rel(None)}
        )
        return FederationState(global_vector=setup.initial_vector.copy())
    env = read_json(folder.file("environment.json"))
    if env["base_weights_sha256"] != base_before:
        raise RunFolderError("the backbone's weights differ from the ones this run started with")
    next_round = int(saved_state["next_round"])
    folder.truncate_metrics(next_round - 1)
    if next_round > 0:
        privacy.restore(read_json(folder.file("privacy/ledgers.json")))
    return FederationState(
        global_vector=folder.load_adapter(saved_state["checkpoint"]),
        next_round=next_round,
        history=folder.read_metrics(),
    )


def _results(
    setup: RunSetup,
    state: FederationState,
    baselines: dict,
    privacy: ClientPrivacy,
    base_before: str,
    base_after: str,
) -> dict:
    cfg = setup.cfg
    last = state.history[-1] if state.history else None
    federated = {
        "pooled": last["eval"]["pooled"] if last else None,
        "clients": last["eval"]["clients"] if last else None,
        "rounds": len(state.history),
        "pooled_by_round": [r["eval"]["pooled"] for r in state.history],
    }
    return {
        "name": cfg.name,
        "task": {
            "name": setup.task.name,
            "synthetic": setup.task.synthetic,
            "primary_metric": setup.task.primary_metric,
        },
        "adapter": cfg.model.adapter,
        "backbone": cfg.model.backbone,
        "trainable_parameters": setup.bundle.spec.size,
        "federated": federated,
        **{name: result for name, result in baselines.items()},
        "privacy": privacy.report(),
        "secure_aggregation": {
            "enabled": cfg.secure_aggregation.enabled,
            "aborted_rounds": [r["round"] for r in state.history if not r["aggregated"]],
        },
        "base_weights": {
            "before": base_before,
            "after": base_after,
            "unchanged": base_before == base_after,
        },
    }


def _timing(state: FederationState, total: dict, resumed: bool) -> dict:
    """Federated rounds' own time, and the whole run's (all invocations, from energy.json)."""
    return {
        "federated_wall_s": sum(r["wall_s"] for r in state.history),
        "federated_cpu_s": sum(r["cpu_s"] for r in state.history),
        "run_wall_s": total.get("wall_s"),
        "run_cpu_s": total.get("cpu_s"),
        "resumed": resumed,
    }
