"""The references a federation is judged against, on the same backbone and adapter.

``zero_shot`` (optional) is the backbone before any fine-tuning, scored the same way: what an
instruct LLM gets right before the federation teaches it anything.

Budget rule: every institution gets the number of local optimizer steps it is *expected* to
take in the federation (rounds x clients_per_round / num_clients x its steps per round).
``isolated`` trains each institution alone for exactly that; ``centralized`` trains one model
on the pooled data for their sum. With DP on, each baseline calibrates its own noise to the
same target epsilon over its own steps.

A baseline's budget ends the way an institution's does in the federation: it trains only the
steps its ledger affords (``ClientPrivacy.affordable_steps``; with ``noise_multiplier`` set
explicitly the planned steps can overshoot the target) and records the steps it took, the
steps it was given, and whether it stopped on budget. Its events and sigma go into its own
report, so ``audit --verify`` recomputes its epsilon like the federation's.
"""

from __future__ import annotations

import math

from securefed.model.evaluation import mean_metrics
from securefed.privacy.budget import ClientPrivacy, Exhausted
from securefed.run.progress import Progress
from securefed.run.records import EvalMetrics
from securefed.run.setup import RunSetup, lr_span


def baseline_steps(setup: RunSetup) -> list[int]:
    """Each institution's expected number of local steps in the federation."""
    share = setup.expected_rounds_per_client()
    return [max(1, math.ceil(share * setup.local_steps(c))) for c in range(setup.num_clients)]


def _train(
    setup: RunSetup,
    data,
    steps: int,
    privacy: ClientPrivacy,
    who: int,
    tag: str,
    progress: Progress,
) -> tuple[dict, EvalMetrics]:
    """Train ``who`` from the initial adapter for the steps its budget affords; evaluate."""
    taken = privacy.affordable_steps(who, steps)
    info = {"steps": taken, "planned_steps": steps, "stopped_on_budget": taken < steps}
    if taken == 0:  # not one step fits: the initial adapter is this baseline's model
        return {**info, "train_loss": None}, setup.evaluate(setup.initial_vector)
    plan = privacy.plan_round(who, taken)
    assert not isinstance(plan, Exhausted), "affordable_steps promised these steps fit"
    label = f"{tag} {who}" if tag == "isolated" else tag
    stats = setup.train_from(
        setup.initial_vector,
        data,
        steps=taken,
        seed_parts=(tag, who),
        dp=plan,
        progress=progress,
        label=label,
        lr_span=lr_span(setup.cfg, None),
    )
    privacy.record_round(who, 0, stats)
    return {**info, "steps": stats.steps, "train_loss": stats.mean_loss}, setup.evaluate_current()


def run_centralized(setup: RunSetup, progress: Progress) -> dict:
    steps = sum(baseline_steps(setup))
    privacy = ClientPrivacy(setup.cfg, [len(setup.pooled_train)], [steps], rounds=1)
    info, metrics = _train(setup, setup.pooled_train, steps, privacy, 0, "centralized", progress)
    return {**metrics, **info, "privacy": privacy.report()}


def run_isolated(setup: RunSetup, progress: Progress) -> dict:
    steps = baseline_steps(setup)
    sizes = [len(d) for d in setup.client_train]
    privacy = ClientPrivacy(setup.cfg, sizes, steps, rounds=1)
    clients: dict[str, dict] = {}
    for c in range(setup.num_clients):
        data = setup.client_train[c]
        info, metrics = _train(setup, data, steps[c], privacy, c, "isolated", progress)
        clients[str(c)] = {"own": metrics["clients"][str(c)], "pooled": metrics["pooled"], **info}
    return {
        "pooled": mean_metrics({c: m["pooled"] for c, m in clients.items()}),
        "own": mean_metrics({c: m["own"] for c, m in clients.items()}),
        "clients": clients,
        "privacy": privacy.report(),
    }


def run_zero_shot(setup: RunSetup, progress: Progress) -> dict:
    """The backbone before any fine-tuning (the initial adapter: LoRA's B and IA3's scales
    are the identity), scored the same way; an encoder's classification head is untrained
    (chance), while on multiple choice an encoder scores by similarity and has no head."""
    return dict(setup.evaluate(setup.initial_vector))


RUNNERS = {"centralized": run_centralized, "isolated": run_isolated, "zero_shot": run_zero_shot}
