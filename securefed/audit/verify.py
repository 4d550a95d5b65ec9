"""``securefed audit --verify``: recompute every hash and every epsilon a run folder claims.

Checks, each against the files as they are now:

1. the metrics chain: every record's ``record_hash`` is the hash of its body, its
   ``prev_hash`` is the previous record's hash (genesis for the first), rounds count up from 0;
2. the artefacts each record lists (checkpoints, transcripts, ledgers, config.yaml,
   environment.json, partition.json, the initial checkpoint): the file's SHA-256 equals the
   recorded one. A file rewritten every round (``privacy/ledgers.json``) can only match its
   latest record; its earlier rounds are covered by 4. The setup files must be listed by the
   records, with one hash throughout: a run that never recorded its config fails;
3. each round's ``global_adapter_sha256`` against its checkpoint's contents, and each
   transcript's survivors and byte counts against the record;
4. epsilon: for every institution, from its recorded events with the accountant of record,
   after every round (against ``metrics.jsonl``) and at the end (against ``results.json``),
   plus every cross-check figure ``results.json`` reports; the events' rounds against the
   rounds the institution trained in; and the institution-level epsilon of distributed DP
   (``institution.check_institution``: its events against the rounds released and the
   institutions aggregated in each);
5. the files a finished run must have: ``results.json``, each configured baseline's file,
   ``energy.json`` (its totals against the ones ``results.json`` quotes), ``warnings.json``
   (``securefed simulate``), and ``state.json`` committing every round of the chain;
6. ``results.json`` against the chain (final metrics, rounds, aborted rounds, timing sums)
   and against ``baselines/*.json``;
7. a run with canaries: ``canaries.json``'s scores recomputed (gradient canaries: from their
   carriers' ``canary_trace.safetensors``, bound by the seal, whose steps must be the ledger's;
   input canaries: their losses under the final adapter, hashed in the chain, on the backbone
   the config names), gradient canaries' matrices from the config and the vector spec in
   ``environment.json``, its claim from the epsilons ``results.json`` reports (checked in 4),
   its count and kind against the config.

``verify_records`` runs these checks; ``bound.verify_run`` adds the audits bound to the
run, and ``bound.verify_audit`` checks an audit folder instead (its ``audit.json`` alone, as
committed): every epsilon it shows, the federation's and the baselines', recomputed from the
events it carries, and the empirical lower bound and estimate recomputed from the canary
scores and coins.

This detects an edit of any one file, or of several that were not edited consistently. It
cannot detect a folder rewritten consistently from scratch: for that, keep the chain head
(the last ``record_hash``, printed in the audit) somewhere the run's operator cannot change.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError

from securefed.audit.empirical_report import verify_scores
from securefed.audit.epsilons import check_epsilons
from securefed.audit.institution import check_institution
from securefed.audit.source import BASELINES, RunSnapshot, read_snapshot
from securefed.audit.verification import Verification
from securefed.privacy.canaries import CanaryPlan, canary_blocks, canary_claim
from securefed.privacy.canary_trace import CanaryTrace
from securefed.run.folder import (
    CANARIES,
    CANARY_TRACE,
    GENESIS_HASH,
    RESULTS,
    SETUP_FILES,
    STATE,
    TUNING,
    WARNINGS,
    RunFolder,
    checkpoint_rel,
    read_json,
    record_hash,
    sha256_file,
    transcript_rel,
    vector_hash,
)
from securefed.run.seal import seal_mismatches


def verify_records(run_dir: str | Path) -> Verification:
    """Recompute everything the run folder's records claim (the audit's integrity section);
    never raises for a mismatch, lists it."""
    run = read_snapshot(run_dir)
    out = Verification()
    _check_chain(run, out)
    _check_artefacts(run, out)
    _check_checkpoints_and_transcripts(run, out)
    check_epsilons(run, out)
    check_institution(run, out)
    _check_finished_run_files(run, out)
    _check_results(run, out)
    _check_canaries(run, out)
    return out


def _check_chain(run: RunSnapshot, out: Verification) -> None:
    previous = GENESIS_HASH
    for i, rec in enumerate(run.metrics):
        where = f"metrics.jsonl record {i}"
        out.expect("record hash", where, rec["record_hash"], record_hash(rec))
        out.expect("chain link (prev_hash)", where, rec["prev_hash"], previous)
        out.expect("round number", where, rec["round"], i)
        previous = rec["record_hash"]


def _check_artefacts(run: RunSnapshot, out: Verification) -> None:
    history: dict[str, list[tuple[int, str]]] = {}
    for rec in run.metrics:
        for rel, digest in rec["artefacts"].items():
            history.setdefault(rel, []).append((rec["round"], digest))
    for rel, versions in sorted(history.items()):
        last_round, digest = versions[-1]
        path = run.path / rel
        found = sha256_file(path) if path.is_file() else "missing"
        out.expect("artefact sha256", f"{rel} (recorded in round {last_round})", digest, found)
        distinct = list(dict.fromkeys(d for _, d in versions))
        if rel in SETUP_FILES:
            out.expect("setup file unchanged during the run", rel, distinct[:1], distinct)
        elif len(distinct) > 1:
            out.notes.append(
                f"{rel}: rewritten during the run ({len(distinct)} versions); the "
                f"file on disk is checked against round {last_round}'s hash"
            )
    if run.metrics:
        tuned = (run.config.get("training") or {}).get("lr_grid") is not None
        for rel in SETUP_FILES:  # tuning.json exists where lr_grid is set (run.tuning)
            if rel not in history and (rel != TUNING or tuned):
                out.expect("artefact recorded", rel, "a sha256 in metrics.jsonl", "none recorded")


def _check_checkpoints_and_transcripts(run: RunSnapshot, out: Verification) -> None:
    folder = RunFolder(run.path)
    for rec in run.metrics:
        rel = folder.checkpoint_rel(rec["round"])
        if folder.file(rel).is_file():
            out.expect(
                "global adapter hash",
                rel,
                rec["global_adapter_sha256"],
                vector_hash(folder.load_adapter(rel)),
            )
        else:
            out.expect("checkpoint present", rel, "present", "missing")
        transcript = run.transcripts.get(rec["round"])
        if transcript is None or "aborted" in transcript:
            continue
        where = transcript_rel(rec["round"])
        survivors = transcript.get("participants", {}).get("masked_input")
        out.expect("aggregated clients", where, list(rec["aggregated"]), survivors)
        out.expect("bytes per client", where, rec["bytes"], transcript.get("bytes"))


def _check_finished_run_files(run: RunSnapshot, out: Verification) -> None:
    """What a finished run must hold: ``results.json``, every configured baseline's file,
    ``energy.json`` when the results quote its totals, ``warnings.json`` when simulate ran
    it, and a ``state.json`` that commits every round of the chain."""
    if run.results is None:
        out.expect("finished run file", RESULTS, "present", "missing")
        out.notes.append(
            f"{RESULTS} missing: the run did not finish (continue it with simulate --resume) "
            "or the file was deleted"
        )
        return
    # A deployment (results.json names its transport) trains no baseline: the data stays
    # with the nodes. A simulation must hold each configured one.
    deployment = "transport" in run.results
    for name in run.cfg.baselines:
        if name not in run.baselines and (not deployment or name in run.results):
            out.expect("finished run file", f"baselines/{name}.json", "present", "missing")
    if "energy" in run.results:
        found = run.energy["total"] if run.energy is not None else "missing"
        out.expect(
            "energy totals", "results.json energy vs energy.json", run.results["energy"], found
        )
    if "transport" not in run.results and not (run.path / WARNINGS).is_file():  # in-process
        out.expect("finished run file", WARNINGS, "present", "missing")
    out.checks += 1  # the seal: each of its mismatches is one more failed check
    for check, where, recorded, found in seal_mismatches(run.path):
        out.expect(check, where, recorded, found)
    state = read_json(run.path / STATE) if (run.path / STATE).is_file() else None
    if state is None:
        out.expect("finished run file", STATE, "present", "missing")
        return
    last_round = len(run.metrics) - 1 if run.metrics else None
    out.expect("rounds committed", f"{STATE} next_round", state.get("next_round"), len(run.metrics))
    out.expect(
        "last round committed",
        f"{STATE} checkpoint",
        state.get("checkpoint"),
        checkpoint_rel(last_round),
    )


def _check_results(run: RunSnapshot, out: Verification) -> None:
    if run.results is None:
        return
    fed = run.results["federated"]
    last = run.metrics[-1] if run.metrics else None
    out.expect("rounds", "results.json federated.rounds", fed["rounds"], len(run.metrics))
    out.expect(
        "final pooled metrics",
        "results.json federated.pooled",
        fed["pooled"],
        last["eval"]["pooled"] if last else None,
    )
    out.expect(
        "final metrics per institution",
        "results.json federated.clients",
        fed["clients"],
        last["eval"]["clients"] if last else None,
    )
    out.expect(
        "pooled metrics by round",
        "results.json federated.pooled_by_round",
        fed["pooled_by_round"],
        [r["eval"]["pooled"] for r in run.metrics],
    )
    aborted = [r["round"] for r in run.metrics if not r["aggregated"]]
    out.expect(
        "aborted rounds",
        "results.json secure_aggregation.aborted_rounds",
        run.results["secure_aggregation"].get("aborted_rounds"),
        aborted,
    )
    timing = run.results.get("timing") or {}
    out.expect(
        "federated wall time",
        "results.json timing.federated_wall_s",
        timing.get("federated_wall_s"),
        sum(r["wall_s"] for r in run.metrics),
    )
    out.expect(
        "federated CPU time",
        "results.json timing.federated_cpu_s",
        timing.get("federated_cpu_s"),
        sum(r["cpu_s"] for r in run.metrics),
    )
    out.expect(
        "base weights",
        "results.json base_weights.before",
        run.results.get("base_weights", {}).get("before"),
        run.environment.get("base_weights_sha256"),
    )
    for name in BASELINES:
        if name in run.baselines or name in run.results:
            out.expect(
                "baseline",
                f"results.json {name} vs baselines/{name}.json",
                run.results.get(name),
                run.baselines.get(name),
            )


def _check_canaries(run: RunSnapshot, out: Verification) -> None:
    """``canaries.json`` against the checkpoints, the reported epsilons and the config."""
    configured = run.cfg.audit.canaries
    if run.canaries is None:
        if configured and run.results is not None:
            out.expect("finished run file", CANARIES, "present", "missing")
        return
    plan = CanaryPlan.from_json(run.canaries["plan"])
    kind = run.cfg.audit.canary_kind
    out.expect("canaries", f"{CANARIES} plan", [plan.count, plan.kind], [configured, kind])
    spec = run.environment.get("vector_spec") or {}
    if plan.kind == "gradient" and spec:
        parameters = run.cfg.audit.canary_parameters
        shapes = tuple(tuple(shape) for shape in spec["shapes"])
        blocks = canary_blocks(tuple(spec["names"]), shapes, parameters)
        out.expect("canary blocks", f"{CANARIES} plan", list(plan.blocks), list(blocks))
    final = None
    if plan.kind == "input":
        folder, rounds = RunFolder(run.path), [int(record["round"]) for record in run.metrics]
        final_rel = folder.checkpoint_rel(rounds[-1]) if rounds else ""
        if not rounds or not folder.file(final_rel).is_file():
            out.expect("canary scores", CANARIES, "the final checkpoint", "missing")
            return
        final = folder.load_adapter(final_rel)
    problems, _ = verify_scores(run.canaries, run.path, final)
    source = "the final checkpoint" if plan.kind == "input" else CANARY_TRACE
    out.expect("canary scores", f"{CANARIES} vs {source}", problems, [])
    _check_trace_steps(run, plan, out)
    if run.results is not None:
        epsilon, delta = canary_claim(plan, run.results["privacy"])
        out.expect(
            "canary claim",
            f"{CANARIES} (epsilon, delta) vs the carriers' largest in results.json privacy",
            [run.canaries["claimed_epsilon"], run.canaries["delta"]],
            [epsilon, delta],
        )


def _check_trace_steps(run: RunSnapshot, plan: CanaryPlan, out: Verification) -> None:
    """Under DP-SGD, each carrier's trace holds one row per noised step its ledger records in
    the rounds the canaries rode (from ``training.linear_probe_rounds`` on): a trace with
    steps left out would audit less than the claim covers."""
    ledgers = (run.ledgers or {}).get("ledgers") or {}
    if plan.kind != "gradient" or not (run.ledgers or {}).get("dp_enabled"):
        return
    try:
        trace = CanaryTrace.from_arrays(plan, RunFolder(run.path).load_arrays(CANARY_TRACE))
    except (OSError, SafetensorError, ValueError):
        return  # the scores' check reports it
    probe = run.cfg.training.linear_probe_rounds
    for c in plan.institutions:
        events = (ledgers.get(str(c)) or {}).get("events") or []
        steps = sum(
            int(e["steps"])
            for e in events
            if e.get("kind") == "poisson_gaussian" and int(e["round_index"]) >= probe
        )
        where = f"{CANARY_TRACE} institution {c} vs its ledger's steps"
        out.expect("canary trace steps", where, len(trace.steps(c)[0]), steps)
