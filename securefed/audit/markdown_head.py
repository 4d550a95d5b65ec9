"""The audit's first screen: the verdict, the figures at a glance, the warnings the run
printed and one table per institution (epsilon and accuracy, with intervals and floors)."""

from __future__ import annotations

from securefed.audit.source import as_float
from securefed.audit.tables import fmt, present, table, with_interval
from securefed.audit.verdict import pooled_test_size
from securefed.privacy.display import epsilon_text


def head_markdown(audit: dict) -> str:
    """The verdict in one line, then the figures at a glance."""
    return f"**Verdict:** {audit['verdict']}.\n\n" + glance_markdown(audit)


def test_sizes(audit: dict) -> tuple[dict[str, int], int | None]:
    """Each institution's test split size, and the pooled test set's (None: the server never
    saw the data, so the run has no partition record)."""
    sizes = {str(c["client"]): c["test_size"] for c in audit["partition"].get("clients", [])}
    return sizes, pooled_test_size(audit)


def warnings_markdown(audit: dict) -> str | None:
    """The warnings the run printed (each once), or None when it printed none."""
    if not audit["warnings"]:
        return None
    items = [f"- {w['message']} ({w['category']})" for w in audit["warnings"]]
    return "## Warnings the run printed\n\n" + "\n".join(items)


def institutions_markdown(audit: dict) -> str:
    """One table per institution: epsilon and delta, records, and accuracy on its own test
    split and on the pooled test set, federated against isolated and centralized."""
    privacy, acc = audit["privacy"], audit["accuracy"]
    metric = acc["primary_metric"]
    sizes = {str(c["client"]): c for c in audit["partition"].get("clients", [])}
    own_sizes, pooled_size = test_sizes(audit)
    floors = acc["majority_class"]["clients"]
    trainings = ["federated"] + [
        t for t in ("isolated", "centralized") if acc["baselines"][t]["present"]
    ]
    # The centralized baseline trains one model on the pooled records: its one ledger's
    # epsilon holds for every record, so for every institution.
    pooled_ledger = list(privacy["baselines"].get("centralized", {}).values())
    centralized_epsilon = pooled_ledger[0] if len(pooled_ledger) == 1 else None
    parts = ["## Per institution: privacy spent and accuracy bought"]
    for c, p in privacy["clients"].items():
        size, a = sizes.get(c, {}), acc["clients"].get(c, {})
        epsilon = {
            "federated": p["epsilon"],
            "isolated": privacy["baselines"].get("isolated", {}).get(c),
            "centralized": centralized_epsilon,
        }
        pooled = {
            "federated": (acc["pooled"]["federated"] or {}).get(metric),
            "isolated": (a.get("isolated_pooled") or {}).get(metric),
            "centralized": (acc["pooled"]["centralized"] or {}).get(metric),
        }
        own = [(a.get(t) or {}).get(metric) for t in trainings]
        rows = [
            ["epsilon", *(epsilon_text(epsilon[t]) for t in trainings)],
            [
                f"{metric}, own test split",
                *(accuracy_cell(v, own_sizes.get(c), metric) for v in own),
            ],
            [
                f"{metric}, pooled test set",
                *(accuracy_cell(pooled[t], pooled_size, metric) for t in trainings),
            ],
        ]
        floor = floors.get(c)
        facts = [
            f"delta {fmt(p['delta'])}" if p["delta"] is not None else None,
            f"{size['train_size']} training records" if "train_size" in size else None,
            f"{size['test_size']} test records (pooled: {pooled_size})"
            if "test_size" in size
            else None,
            f"majority floor on its own test split {floor:.3f}"
            + (
                " (NOT beaten by the federated model)"
                if own[0] is not None and own[0] <= floor
                else ""
            )
            if floor is not None
            else None,
            count(len(p["rounds_trained"]), "round") + " trained",
            count(len(p["rounds_budget_stopped"]), "round") + " stopped by its budget"
            if p["rounds_budget_stopped"]
            else None,
        ]
        parts.append(
            f"### Institution {c}\n\n"
            + ", ".join(f for f in facts if f)
            + ".\n\n"
            + table([f"institution {c}", *trainings], present(rows))
        )
    return "\n\n".join(parts)


def accuracy_cell(value: object, n: int | None, metric: str) -> str | None:
    """An accuracy cell with its interval and split size; absent stays absent."""
    return None if value is None else with_interval(value, n, metric)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def glance_markdown(audit: dict) -> str:
    acc, privacy = audit["accuracy"], audit["privacy"]
    metric = acc["primary_metric"]
    eps = [as_float(c["epsilon"]) for c in privacy["clients"].values()]
    worst = max((e for e in eps if e is not None), default=None)
    _, pooled_size = test_sizes(audit)
    rows = [
        [
            f"pooled {metric}, {t}",
            accuracy_cell((acc["pooled"][t] or {}).get(metric), pooled_size, metric),
        ]
        for t in ("federated", "centralized", "isolated")
    ]
    rows += [
        ["DP-SGD", "on" if privacy["dp_enabled"] else "OFF"],
        ["largest epsilon over institutions", epsilon_text(worst)],
        ["empirical epsilon: lower bound", audit["empirical"].get("epsilon_lower_bound")],
        ["budget (target epsilon)", epsilon_text(privacy["target_epsilon"])],
        [
            "institution-level epsilon (the content of an institution's update)",
            epsilon_text((privacy.get("institution") or {}).get("epsilon")),
        ],
        ["secure aggregation", "on" if audit["secure_aggregation"]["enabled"] else "OFF"],
        ["verification", "passed" if audit["integrity"]["verified"] else "FAILED"],
    ]
    return "## At a glance\n\n" + table(["", ""], present(rows))
