"""The audit as Markdown: the record's sections in reading order, tables and plots.

``render_markdown`` takes a function that gives each plot's image address, so the same text
serves ``audit.md`` (``plots/<name>.png``) and the HTML page (``data:`` URIs).
"""

from __future__ import annotations

from collections.abc import Callable

from securefed.audit.markdown_details import (
    communication_markdown,
    config_markdown,
    cost_markdown,
    environment_markdown,
    integrity_markdown,
    partition_markdown,
    sources_markdown,
)
from securefed.audit.plots import Plot
from securefed.audit.source import as_float
from securefed.audit.tables import fmt, table

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
    run = audit["run"]
    task = run["task"]
    synthetic = " (SYNTHETIC)" if task.get("synthetic") else ""
    lines = [
        f"# Privacy and accuracy audit: {run['name']}",
        "",
        table(
            ["", ""],
            [
                ["run folder", run["folder"]],
                ["task", f"{task.get('name')}{synthetic}"],
                [
                    "model",
                    f"{run['backbone']} + {run['adapter']} "
                    f"({fmt(run['trainable_parameters'])} trainable parameters)",
                ],
                ["institutions", run["institutions"]],
                ["rounds", f"{run['rounds_finished']} of {run['rounds_planned']} recorded"],
                ["seed", run["seed"]],
                ["chain head", f"`{audit['integrity']['chain_head']}`"],
                ["audit schema", audit["schema_version"]],
            ],
        ),
    ]
    return "\n".join(lines)


def body_markdown(audit: dict, plots: list[Plot], image_src: Callable[[Plot], str]) -> str:
    """Every section after the title and flags."""
    by_name = {p.name: p for p in plots}

    def image(name: str) -> str:
        plot = by_name[name]
        if plot.png is None:
            return f"*{plot.title}: not shown. {plot.absent_reason}.*"
        return f"**{plot.title}**\n\n![{plot.title}]({image_src(plot)})"

    parts = [
        _glance(audit),
        _threat_model(audit["threat_model"]),
        _privacy(audit["privacy"], image),
        _secure_aggregation(audit["secure_aggregation"]),
        _accuracy(audit["accuracy"], image),
        communication_markdown(audit["communication"]),
        cost_markdown(audit["cost"]),
        partition_markdown(audit["partition"]),
        environment_markdown(audit["environment"]),
        config_markdown(audit["config"]),
        integrity_markdown(audit["integrity"]),
        sources_markdown(audit["sources"]),
    ]
    return "\n\n".join(parts)


def render_markdown(audit: dict, plots: list[Plot], image_src: Callable[[Plot], str]) -> str:
    return (
        "\n\n".join(
            [title_markdown(audit), flags_markdown(audit), body_markdown(audit, plots, image_src)]
        )
        + "\n"
    )


def _glance(audit: dict) -> str:
    acc, privacy = audit["accuracy"], audit["privacy"]
    metric = acc["primary_metric"]
    eps = [as_float(c["epsilon"]) for c in privacy["clients"].values()]
    worst = max((e for e in eps if e is not None), default=None)
    rows = [
        [f"pooled {metric}, {t}", (acc["pooled"][t] or {}).get(metric)]
        for t in ("federated", "centralized", "isolated")
    ]
    rows += [
        ["DP-SGD", "on" if privacy["dp_enabled"] else "OFF"],
        ["largest epsilon over institutions", worst],
        ["budget (target epsilon)", privacy["target_epsilon"]],
        ["secure aggregation", "on" if audit["secure_aggregation"]["enabled"] else "OFF"],
        ["verification", "passed" if audit["integrity"]["verified"] else "FAILED"],
    ]
    return "## At a glance\n\n" + table(["", ""], rows)


def _threat_model(tm: dict) -> str:
    if not tm["present"]:
        return (
            f"## 1. Threat model\n\n**Absent**: no `{tm['source']}` was found when this "
            "audit was built; the assumptions behind it are not stated."
        )
    parts = [
        f"## 1. Threat model\n\nFrom `{tm['source']}` (sha256 `{tm['sha256']}`)"
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


def _privacy(p: dict, image: Callable[[str], str]) -> str:
    head = "## 2. Differential privacy, per institution\n\n"
    if p["dp_enabled"]:
        head += (
            f"Sample-level DP-SGD: unit of privacy is {p['unit']}. Accountant of record: "
            f"**{p['accountant_of_record']}**; budget epsilon {fmt(p['target_epsilon'])} "
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
            v["epsilon"],
            v["delta"],
            v["accountant"],
            v["cross_checks"] or None,
            v["noise_multiplier"],
            v["clip_norm"],
            v["sample_rates"] or None,
            v["steps"],
            v["rounds_trained"],
            v["rounds_budget_stopped"],
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
        image("epsilon_by_client"),
        image("epsilon_by_round"),
    ]
    if p["epsilon_by_round"]:
        ids = list(p["clients"])
        parts.append(
            "Epsilon after each round (accountant of record):\n\n"
            + table(
                ["round", *(f"inst. {c}" for c in ids)],
                [[r["round"], *(r["clients"].get(c) for c in ids)] for r in p["epsilon_by_round"]],
            )
        )
    for name, eps in p["baselines"].items():
        spent = ", ".join(f"institution {c}: {fmt(e)}" for c, e in eps.items()) or "nothing"
        parts.append(f"The {name} baseline's own training spent epsilon {spent}.")
    return "\n\n".join(parts)


def _cross_check_note(p: dict) -> str:
    labels = {k: v for c in p["clients"].values() for k, v in c["cross_check_accountants"].items()}
    if not labels:
        return "Cross-check accountants: none recorded."
    return "Cross-check accountants: " + ", ".join(labels.values()) + "."


def _secure_aggregation(sa: dict) -> str:
    head = "## 3. Secure aggregation\n\n"
    if not sa["enabled"]:
        head += (
            "**Off.** Rounds were aggregated by plain FedAvg: the server saw every "
            "institution's update."
        )
    else:
        configured = [[k, v] for k, v in sa["configured"].items() if k != "dropout"]
        head += "Configured:\n\n" + table(["parameter", "value"], configured)
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


def _accuracy(acc: dict, image: Callable[[str], str]) -> str:
    metric = acc["primary_metric"]
    trainings = ("federated", "centralized", "isolated")
    pooled = table(
        ["metric", *trainings],
        [[m, *((acc["pooled"][t] or {}).get(m) for t in trainings)] for m in acc["metrics"]],
    )
    clients = table(
        ["institution", *(f"{t} {metric}" for t in trainings)],
        [[c, *((v[t] or {}).get(metric) for t in trainings)] for c, v in acc["clients"].items()],
    )
    floor = acc["majority_class"]
    majority = (
        f"Majority-class floor (always answering '{floor['label']}'): pooled accuracy "
        f"{fmt(floor['pooled'])}; per institution "
        + ", ".join(f"{c}: {fmt(v)}" for c, v in floor["clients"].items())
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
        [[r["round"], r["pooled"].get(metric)] for r in acc["by_round"]],
    )
    return "\n\n".join(
        [
            "## 4. Accuracy: federated vs centralized vs isolated\n\nFederated: the final global "
            "adapter. Centralized: one model on the pooled data (what the law forbids). Isolated: "
            "each institution alone; per institution on its own test split, pooled as the mean of "
            "the institutions' models on the pooled test set.",
            "Pooled test set:\n\n" + pooled,
            majority,
            "Each institution's own test split:\n\n" + clients,
            *absent,
            image("accuracy"),
            image("accuracy_by_round"),
            "Federated, by round:\n\n" + by_round,
        ]
    )
