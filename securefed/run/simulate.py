"""``securefed simulate``: one run folder from a config, or the continuation of one (--resume).

prepare   data -> partition -> backbone + adapter (``setup``); the run's fixed records
rounds    ``federation.run_federation`` over the in-process transport
finally   baselines (centralized, isolated) -> energy -> results.json
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

from securefed.config import RunConfig, dump_config, load_config
from securefed.errors import ConfigError, RunFolderError
from securefed.model.adapters import base_weights_hash
from securefed.plan_inputs import plan_inputs
from securefed.privacy.budget import ClientPrivacy
from securefed.privacy.distributed.parameters import DistributedDpPlan, central_noise_std
from securefed.privacy.institution import InstitutionPrivacy, plan_for_run
from securefed.privacy.planner import (
    InstitutionPlan,
    format_federation_plan,
    format_plan,
    plan_federation,
    plan_institutions,
)
from securefed.run.canaries import attach_canaries, record_canaries
from securefed.run.energy import EnergyMeter, record_energy
from securefed.run.federation import FederationState, run_federation
from securefed.run.folder import (
    CONFIG,
    ENVIRONMENT,
    LEDGERS,
    RESULTS,
    TUNING,
    WARNINGS,
    RunFolder,
    check_creatable,
    read_json,
    removed_unless_a_round_commits,
    server_state_rel,
    write_json,
)
from securefed.run.inprocess import InProcessTransport
from securefed.run.lock import LOCK
from securefed.run.parallel_baselines import BackgroundBaselines
from securefed.run.partition_view import partition_lines
from securefed.run.progress import Progress
from securefed.run.records import (
    Results,
    base_weights,
    environment,
    federated_results,
    federated_timing,
)
from securefed.run.resume import (
    ResumePoint,
    check_run_folder,
    finished,
    finished_message,
    privacy_before,
    resume_point,
)
from securefed.run.run_warnings import RunWarnings
from securefed.run.seal import seal_run
from securefed.run.server_optimizer import state_names
from securefed.run.setup import RunSetup, build_setup, model_facts, plan_sizes, task_facts
from securefed.run.tuning import FEDERATED, choose_learning_rates


def new_run_dir(cfg: RunConfig, out: str | None) -> Path:
    """Where a new run will go, checked but not yet created (nothing is written before the
    config, the data and the backbone have loaded)."""
    if out is not None:
        path = Path(out)
        check_creatable(path, "--out")
        if path.exists() and any(path.iterdir()):
            if (path / LOCK).is_file():  # refused, naming the pid, while another run writes it
                RunFolder(path).hold()
                RunFolder(path).release()
            raise RunFolderError(
                f"--out {path} exists and is not empty; pick a new folder "
                f"or continue it with --resume {path}"
            )
        return path
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.output.dir) / f"{cfg.name}-{stamp}"
    check_creatable(path, "output.dir")
    return path


def client_privacy(setup: RunSetup) -> ClientPrivacy:
    """Every institution's noise plan and ledger for this run, and the federation's
    institution-level plan and ledger where ``privacy.distributed`` is on."""
    distributed = setup.cfg.privacy.distributed.enabled
    return ClientPrivacy(
        setup.cfg,
        [len(d) for d in setup.client_train],
        [setup.local_steps(c) for c in range(setup.num_clients)],
        institution=InstitutionPrivacy(setup.cfg, setup.bundle.spec.size) if distributed else None,
    )


def dp_plan(
    cfg: RunConfig, privacy: ClientPrivacy, steps_per_round: list[int], dimension: int
) -> list[InstitutionPlan]:
    """Each institution's calibrated sigma and noise/signal (``securefed plan`` prints it)."""
    return plan_institutions(
        train_sizes=privacy.train_sizes,
        noise_multipliers=[privacy.noise[c] for c in range(len(privacy.train_sizes))],
        steps_per_round=steps_per_round,
        rounds=cfg.training.rounds,
        batch_size=cfg.training.batch_size,
        trainable_parameters=dimension,
        dp_optimizer=cfg.training.dp_optimizer,
    )


def federation_plan(plan: DistributedDpPlan) -> str:
    """The distributed-DP noise of the federation's update and whether it can learn."""
    facts = plan_federation(
        noise_multiplier=central_noise_std(plan, plan.min_survivors) / plan.clip_norm,
        min_survivors=plan.min_survivors,
        cohort=plan.cohort_size,
        rounds=plan.rounds,
        dimension=plan.dimension,
    )
    return format_federation_plan(facts, plan.dimension)


def plan_only(cfg: RunConfig) -> str:
    """``securefed plan``: the plan ``simulate`` prints, from counts and the adapter's size
    alone (no record is encoded or run through the backbone, so it takes seconds)."""
    sizes, steps, dimension = plan_sizes(cfg)
    parts = []
    if cfg.privacy.dp.enabled:
        privacy = ClientPrivacy(cfg, sizes, steps)
        parts.append(format_plan(dp_plan(cfg, privacy, steps, dimension), dimension))
    if cfg.privacy.distributed.enabled:
        parts.append(federation_plan(plan_for_run(plan_inputs(cfg), dimension)))
    return "\n".join(parts)


def refuse_untrainable_plan(cfg: RunConfig, privacy: ClientPrivacy, steps: list[int]) -> None:
    """A plan in which no institution can afford its first round trains nothing: refuse it
    before round 0, with the settings that would let it train."""
    if any(privacy.plan_round(c, steps[c]) is not privacy.EXHAUSTED for c in range(len(steps))):
        return
    sigma = ", ".join(f"{privacy.noise[c]:.3g}" for c in range(len(steps)))
    raise ConfigError(
        "privacy.dp.noise_multiplier",
        cfg.privacy.dp.noise_multiplier,
        f"nothing would train: with noise multiplier(s) {sigma}, no institution can afford "
        f"even its first round of {max(steps)} step(s) within privacy.dp.target_epsilon="
        f"{cfg.privacy.dp.target_epsilon}; raise the noise multiplier (or leave it unset to "
        "calibrate it to the budget), raise the target, or lower training.local_steps",
    )


def partition_record(setup: RunSetup) -> dict:
    """``partition.json``: with any DP mechanism on, without the counts computed from training
    records."""
    return setup.partition.summary(
        list(setup.task.label_names), withhold_training_counts=setup.cfg.privacy.any_mechanism
    )


def simulate(
    cfg: RunConfig | None = None,
    out: str | None = None,
    resume: str | None = None,
    progress: Progress | None = None,
) -> tuple[Path, Results]:
    """Run (or resume) a simulation; returns the run folder and its results."""
    progress = progress or Progress(enabled=False)
    where, cfg, point = _open(cfg, out, resume)
    try:
        return _simulate(cfg, out, where, point, progress)
    finally:
        where.release()


def _simulate(
    cfg: RunConfig, out: str | None, where: RunFolder, point: ResumePoint | None, progress: Progress
) -> tuple[Path, Results]:
    """``simulate`` while this process holds ``where``'s lock (``RunFolder.create`` takes it
    for a new run, ``_open`` for a resumed one)."""
    earlier = read_json(where.file(WARNINGS)) if where.file(WARNINGS).is_file() else []
    with RunWarnings(progress.console, earlier) as run_warnings, EnergyMeter() as meter:
        for repaired in point.repaired if point is not None else []:
            progress.log(f"resume: {repaired}")
        setup = build_setup(cfg)
        attach_canaries(setup)
        for line in partition_lines(partition_record(setup)):  # training counts withheld under DP
            progress.log(line)
        privacy = client_privacy(setup)
        if cfg.privacy.dp.enabled:
            steps = [setup.local_steps(c) for c in range(setup.num_clients)]
            plans = dp_plan(cfg, privacy, steps, setup.bundle.spec.size)
            progress.log(format_plan(plans, setup.bundle.spec.size))
            if point is None:
                refuse_untrainable_plan(cfg, privacy, steps)
        if privacy.institution is not None:
            progress.log(federation_plan(privacy.institution.plan))
        base_before = base_weights_hash(setup.bundle.model)
        key = "--out" if out is not None else "output.dir"
        if point is None:
            existed = where.path.is_dir()
            folder = RunFolder.create(where.path, dump_config(cfg), key)
            guard = removed_unless_a_round_commits(folder, existed)
        else:
            folder, guard = where, contextlib.nullcontext()
        with guard:
            tuning = _tuning(setup, folder, point, progress)
            state = _start_or_continue(setup, folder, point, privacy, base_before)
            rates = tuning["lr"] if tuning is not None and tuning["tuned"] else {}
            federation = setup.with_lr(rates[FEDERATED]) if FEDERATED in rates else setup
            transport = InProcessTransport(federation, privacy, progress)
            with BackgroundBaselines(setup, folder, progress, rates) as background, progress:
                state = run_federation(
                    cfg, folder, state, transport, setup.evaluate, setup.bundle.spec.hash, progress
                )
                baselines = background.results()
        if setup.canaries is not None:  # the released adapters are final: score the canaries
            record_canaries(folder, setup, state.global_vector, privacy.report())
        base_after = base_weights_hash(setup.bundle.model)
    energy = record_energy(folder.path, meter.report())
    results = federated_results(
        cfg,
        task_facts(setup.task),
        model_facts(setup.bundle),
        state.history,
        privacy.report(),
        cfg.secure_aggregation.enabled,
    )
    results.update(baselines)  # type: ignore[typeddict-item]
    if tuning is not None:
        results["tuning"] = tuning
    results["base_weights"] = base_weights(base_before, base_after)
    results["timing"] = {
        **federated_timing(state.history),
        "run_wall_s": energy["total"].get("wall_s"),
        "run_cpu_s": energy["total"].get("cpu_s"),
        "resumed": point is not None,
    }
    results["energy"] = energy["total"]
    write_json(folder.file(WARNINGS), run_warnings.records)
    write_json(folder.file(RESULTS), results)
    seal_run(folder)  # the run's last write: everything above, chained to the last round
    return folder.path, results


def _open(
    cfg: RunConfig | None, out: str | None, resume: str | None
) -> tuple[RunFolder, RunConfig, ResumePoint | None]:
    """The folder of a run to continue and where it continues, or where a new run will go
    (not created yet: ``RunFolder.create`` runs once the setup has loaded)."""
    if resume is not None:
        folder = RunFolder(resume)
        check_run_folder(folder)
        if finished(folder):
            raise RunFolderError(finished_message(folder))
        folder.hold()  # one writer; then what it holds is checked against the chain
        point = resume_point(folder)  # checks the setup files before the config is trusted
        cfg = load_config(folder.file(CONFIG))
        if cfg.audit.canaries:
            raise RunFolderError(
                f"{resume} carries {cfg.audit.canaries} canaries whose secret coins lived only "
                "in the interrupted process: it cannot be resumed; start it again"
            )
        return folder, cfg, point
    if cfg is None:
        raise ValueError("simulate needs a config, or resume= a run folder")
    return RunFolder(new_run_dir(cfg, out)), cfg, None


def _tuning(
    setup: RunSetup, folder: RunFolder, point: ResumePoint | None, progress: Progress
) -> dict | None:
    """Each arm's learning rate (``run.tuning``): chosen and written to ``tuning.json`` before
    the setup files are hashed (new run), or read back (resume); None without a grid."""
    if point is not None:
        return read_json(folder.file(TUNING)) if folder.file(TUNING).is_file() else None
    tuning = choose_learning_rates(setup, progress)
    if tuning is not None:
        write_json(folder.file(TUNING), tuning)
    return tuning


def _start_or_continue(
    setup: RunSetup,
    folder: RunFolder,
    point: ResumePoint | None,
    privacy: ClientPrivacy,
    base_before: str,
) -> FederationState:
    """Write the run's fixed records (new run) or reload its last committed round (resume)."""
    if point is None:
        folder.write_setup(
            environment(
                setup.cfg,
                model_facts(setup.bundle),
                base_before,
                task={"name": setup.task.name, "synthetic": setup.task.synthetic},
            ),
            partition_record(setup),
            setup.initial_vector,
            setup.bundle.spec.hash,
        )
        return FederationState(global_vector=setup.initial_vector.copy())
    env = read_json(folder.file(ENVIRONMENT))
    if env["base_weights_sha256"] != base_before:
        raise RunFolderError("the backbone's weights differ from the ones this run started with")
    folder.truncate_metrics(point.next_round - 1)
    server_state = None  # before round 0: the optimizer's initial state
    if point.next_round > 0:
        privacy.restore(privacy_before(read_json(folder.file(LEDGERS)), point.next_round))
        if state_names(setup.cfg.training.server_optimizer):
            server_state = folder.load_server_state(server_state_rel(point.next_round - 1))
    return FederationState(
        global_vector=folder.load_adapter(point.checkpoint),
        server_state=server_state,
        next_round=point.next_round,
        history=folder.read_metrics(),
    )
