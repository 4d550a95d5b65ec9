"""The audit as Markdown: the record's sections in reading order, tables and plots.

Reading order: the verdict first (its one line and the figures at a glance, flags, the
warnings the run printed, one table per institution, the plots), then the details, then an
appendix with the threat model. A figure the run did not record is left out rather than
shown as a placeholder; counts are counts (rounds trained: 2), while round numbers in
per-round tables are the run folder's indices.

``render_markdown`` takes a function that gives each plot's image address, so the same text
serves ``audit.md`` (``plots/<name>.png``) and the HTML page (``data:`` URIs).
"""

from __future__ import annotations

from collections.abc import Callable

from securefed.audit.institution import institution_markdown
from securefed.audit.markdown_details import (
    communication_markdown,
    config_markdown,
    cost_markdown,
    empirical_markdown,
    environment_markdown,
    epsilon_by_round_markdown,
    integrity_markdown,
    partition_markdown,
    sources_markdown,
)
from securefed.audit.markdown_head import (
    accuracy_cell,
    head_markdown,
    institutions_markdown,
    test_sizes,
    warnings_markdown,
)
from securefed.audit.plots import Plot
from securefed.audit.tables import fmt, present, table
from securefed.privacy.display import epsilon_text

ABSENT = "not recorded"
STAGE_TITLES = {
    "advertise_keys": "advertise keys",
    "share_keys": "share keys",
    "masked_input": "masked input",
    "consistency_check": "consistency check",
    "unmasking": "unmasking",
}


def flags_markdown(audit: dict) -> str:
    if not audit["flags"]:
        return "## Flags\n\nNone: DP on, secure aggregation on, verified, within budget."
    items = [f"- **{f['severity'].upper()}** ({f['code']}): {f['message']}" for f in audit["flags"]]
    return "## Flags: read these first\n\n" + "\n".join(items)


def title_markdown(audit: dict) -> str:
    return f"# Privacy and accuracy audit: {audit['run']['name']}"


def run_markdown(audit: dict) -> str:
    """What ran: folder, task, model, institutions, rounds, seed, chain head."""
    run = audit["run"]
    task = run["task"]
    synthetic = " (SYNTHETIC)" if task.get("synthetic") else ""
    parameters = run["trainable_parameters"]
    model = f"{run['backbone']} + {run['adapter']}" + (
        f" ({fmt(parameters)} trainable parameters)" if parameters is not None else ""
    )
    rows = [
        ["run folder", run["folder"]],
        ["task", f"{task.get('name')}{synthetic}"],
        ["model", model],
        ["institutions", run["institutions"]],
        ["rounds", f"{run['rounds_finished']} of {run['rounds_planned']} recorded"],
        ["seed", run["seed"]],
        [
            "chain head",
            f"`{audit['integrity']['chain_head']}`" if audit["integrity"]["chain_head"] else None,
        ],
        ["audit schema", audit["schema_version"]],
    ]
    return "## The run\n\n" + table(["", ""], present(rows))


def plots_markdown(plots: list[Plot], image_src: Callable[[Plot], str]) -> str:
    """Every plot that applies; the others are left out."""
    shown = [f"**{p.title}**\n\n![{p.title}]({image_src(p)})" for p in plots if p.png is not None]
    return "## Plots\n\n" + "\n\n".join(shown) if shown else ""


def body_markdown(audit: dict, plots: list[Plot], image_src: Callable[[Plot], str]) -> str:
    """Every section after the verdict: the details, then the appendix."""
    parts = [
        run_markdown(audit),
        _privacy(audit["privacy"]),
        empirical_markdown(audit["empirical"], _image(plots, "canary_scores", image_src)),
        _secure_aggregation(audit["secure_aggregation"]),
        _accuracy(audit),
        communication_markdown(audit["communication"]),
        cost_markdown(audit["cost"]),
        partition_markdown(audit["partition"]),
        environment_markdown(audit["environment"]),
        config_markdown(audit["config"]),
        integrity_markdown(audit["integrity"]),
        sources_markdown(audit["sources"]),
        "# Appendix\n\n" + _threat_model(audit["threat_model"]),
    ]
    return "\n\n".join(parts)


def _image(plots: list[Plot], name: str, image_src: Callable[[Plot], str]) -> str | None:
    return next((image_src(p) for p in plots if p.name == name and p.png is not None), None)


def verdict_markdown(audit: dict) -> list[str]:
    """The first screen after the flags: warnings (if any), then one table per institution."""
    return [part for part in (warnings_markdown(audit), institutions_markdown(audit)) if part]


def render_markdown(audit: dict, plots: list[Plot], image_src: Callable[[Plot], str]) -> str:
    parts = [
        title_markdown(audit),
        head_markdown(audit),
        flags_markdown(audit),
        *verdict_markdown(audit),
        plots_markdown(plots, image_src),
        body_markdown(audit, plots, image_src),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _threat_model(tm: dict) -> str:
    if not tm["present"]:
        return (
            f"## A. Threat model\n\n**Absent**: no `{tm['source']}` was found when this "
            "audit was built; the assumptions behind it are not stated."
        )
    parts = [
        f"## A. Threat model\n\nFrom `{tm['source']}` (sha256 `{tm['sha256']}`)"
        + (f": *{tm['title']}*" if tm["title"] else "")
        + ".",
        tm["summary"] or "",
    ]
    parts += [
        f"### {s['title']}\n\n{s['text']}"
        for s in tm["sections"]
        if s["title"].strip().lower() != "summary"
    ]
    return "\n\n".join(p for p in parts if p)


def _privacy(p: dict) -> str:
    head = "## 1. Differential privacy, per institution\n\n"
    if p["dp_enabled"]:
        head += (
            f"Sample-level DP-SGD: unit of privacy is {p['unit']}. Accountant of record: "
            f"**{p['accountant_of_record']}**; budget epsilon {epsilon_text(p['target_epsilon'])} "
            f"(delta rule {fmt(p['delta_rule'])}), per-example clip norm {fmt(p['clip_norm'])}, "
            f"Opacus secure_mode {fmt(p['secure_mode'])}; noise and sampling from "
            f"{fmt(p.get('noise_sources_used') or p.get('noise_source'))}."
        )
    else:
        head += (
            "**DP-SGD was off.** Each round an institution trained counts as a non-private "
            "event: its epsilon is ∞ from then on (an institution that never trained: 0)."
        )
    rows = [
        [
            c,
            epsilon_text(v["epsilon"]),
            v["delta"],
            v["accountant"],
            {k: epsilon_text(e) for k, e in v["cross_checks"].items()} or None,
            v["noise_multiplier"],
            v["clip_norm"],
            v["sample_rates"] or None,
            v["steps"],
            len(v["rounds_trained"]),
            len(v["rounds_budget_stopped"]),
            v["within_budget"],
        ]
        for c, v in p["clients"].items()
    ]
    parts = [
        head,
        table(
            [
                "institution",
                "epsilon",
                "delta",
                "accountant",
                "cross-checks",
                "noise multiplier",
                "clip norm",
                "sampling rate",
                "steps",
                "rounds trained",
                "budget-stopped rounds",
                "within budget",
            ],
            rows,
        ),
        _cross_check_note(p),
    ]
    if p["epsilon_by_round"]:
        parts.append(epsilon_by_round_markdown(p["epsilon_by_round"], list(p["clients"])))
    for name, eps in p["baselines"].items():
        used = ", ".join(f"institution {c}: {epsilon_text(e)}" for c, e in eps.items()) or "nothing"
        parts.append(f"The {name} baseline's own training spent epsilon {used}.")
    parts.append(institution_markdown(p.get("institution")))
    return "\n\n".join(part for part in parts if part)


def _cross_check_note(p: dict) -> str:
    labels = {k: v for c in p["clients"].values() for k, v in c["cross_check_accountants"].items()}
    if not labels:
        return "Cross-check accountants: none recorded."
    return "Cross-check accountants: " + ", ".join(labels.values()) + "."


def _secure_aggregation(sa: dict) -> str:
    head = "## 2. Secure aggregation\n\n"
    if not sa["enabled"]:
        head += (
            "**Off.** Rounds were aggregated by plain FedAvg: the server saw every "
            "institution's update."
        )
    else:
        configured = [[k, v] for k, v in sa["configured"].items() if k != "dropout"]
        head += "Configured:\n\n" + table(["parameter", "value"], present(configured))
        head += f"\n\nSimulated dropouts: {fmt(sa['configured'].get('dropout'))}."
        protocol = sa["protocol"]
        if protocol is None:
            head += "\n\nProtocol as run: no round completed, so no transcript states it."
        else:
            rows = [[k, v] for k, v in protocol.items() if k != "quantization"]
            rows += [[f"quantization {k}", v] for k, v in protocol["quantization"].items()]
            head += "\n\nProtocol as run (from the transcripts):\n\n" + table(["", ""], rows)
        entropy = fmt(sa["entropy_sources"]) if sa["entropy_sources"] else ABSENT
        head += f"\n\nKey entropy: {entropy}."
    rows = []
    for r in sa["rounds"]:
        dropped, plan = r["dropouts"], r["plan"]
        rows.append(
            [
                r["round"],
                r["sampled"],
                r["budget_stopped"],
                r["trained"],
                f"{plan['graph']}, t={plan['threshold']} of {plan['cohort_size']}"
                if plan
                else None,
                *(dropped[s] if dropped is not None else None for s in sa["stages"]),
                r["aggregated"],
                r["aborted"],
            ]
        )
    header = [
        "round",
        "sampled",
        "budget-stopped",
        "trained",
        "graph, threshold",
        *(f"dropped before {STAGE_TITLES[s]}" for s in sa["stages"]),
        "aggregated",
        "aborted",
    ]
    return head + "\n\nPer round (institution ids):\n\n" + table(header, rows)


def _learning_rates(tuning: dict | None) -> str:
    """How each arm's learning rate was chosen (``run.tuning``)."""
    if tuning is None:
        return "Learning rates: training.lr for every arm (no training.lr_grid: not tuned)."
    rates = ", ".join(f"{arm} {lr:g}" for arm, lr in tuning["lr"].items())
    if not tuning["tuned"]:
        return f"Learning rates ({rates}): {tuning['reason']} (grid {tuning['grid']} unused)."
    return (
        f"Learning rates chosen alike by each arm from the grid {tuning['grid']}: {rates}, by "
        f"{tuning['metric']} ({tuning['validation_records']} records, "
        f"{tuning['validation_fraction']:g} of each shard); the test splits were not used."
    )


def _accuracy(audit: dict) -> str:
    acc = audit["accuracy"]
    metric = acc["primary_metric"]
    own_sizes, pooled_size = test_sizes(audit)
    trainings = ("federated", "centralized", "isolated")
    pooled = table(
        ["metric", *trainings],
        [
            [
                m,
                *(
                    accuracy_cell((acc["pooled"][t] or {}).get(m), pooled_size, m)
                    for t in trainings
                ),
            ]
            for m in acc["metrics"]
        ],
    )
    clients = table(
        ["institution", *(f"{t} {metric}" for t in trainings), "majority floor"],
        [
            [
                c,
                *(
                    accuracy_cell((v[t] or {}).get(metric), own_sizes.get(c), metric)
                    for t in trainings
                ),
                acc["majority_class"]["clients"].get(c),
            ]
            for c, v in acc["clients"].items()
        ],
    )
    floor = acc["majority_class"]
    majority = (
        f"Majority-class floor (always answering '{floor['label']}'): pooled accuracy "
        f"{fmt(floor['pooled'])}; per institution "
        + ", ".join(f"{c}: {fmt(v)}" for c, v in floor["clients"].items() if v is not None)
        + "."
        if floor["pooled"] is not None
        else "Majority-class floor: absent (no test label counts in partition.json)."
    )
    absent = [
        f"The {n} baseline is absent ({'not run yet' if b['configured'] else 'not configured'})."
        for n, b in acc["baselines"].items()
        if not b["present"]
    ]
    by_round = table(
        ["round", f"pooled {metric}"],
        [
            [r["round"], accuracy_cell(r["pooled"].get(metric), pooled_size, metric)]
            for r in acc["by_round"]
        ],
    )
    return "\n\n".join(
        [
            "## 3. Accuracy: federated vs centralized vs isolated\n\nFederated: the final global "
            "adapter. Centralized: one model on the pooled data (what the law forbids). Isolated: "
            "each institution alone; per institution on its own test split, pooled as the mean of "
            "the institutions' models on the pooled test set.",
            "Pooled test set:\n\n" + pooled,
            _learning_rates(acc["learning_rates"]),
            majority,
            "Each institution's own test split:\n\n" + clients,
            *absent,
            "Federated, by round:\n\n" + by_round,
        ]
    )
