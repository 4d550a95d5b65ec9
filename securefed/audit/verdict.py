"""The audit's first line: what the run bought and what it cost, from the record alone.

    federated accuracy 0.79 (95% CI 0.74-0.83, 400 test records); epsilon <= 8 per
    institution; secure aggregation against a server that lies in its lists; verified

Every clause is derived from the sections below it (``audit --verify`` recomputes it), and a
run that trained nothing, skipped rounds or failed verification says so here, not only in a
flag further down.
"""

from __future__ import annotations

import math

from securefed.audit.source import as_float
from securefed.audit.tables import with_interval
from securefed.privacy.display import epsilon_text


def pooled_test_size(audit: dict) -> int | None:
    """The pooled test set's size: every institution's test split (None: the server never saw
    the data, so the run has no partition record)."""
    sizes = [c["test_size"] for c in audit["partition"].get("clients", [])]
    return sum(sizes) if sizes else None


def verdict(audit: dict) -> str:
    """One line: accuracy, privacy, secure aggregation, skipped rounds, verification."""
    run, acc, privacy, sa = (
        audit["run"],
        audit["accuracy"],
        audit["privacy"],
        audit["secure_aggregation"],
    )
    metric = acc["primary_metric"]
    federated = (acc["pooled"]["federated"] or {}).get(metric)
    rounds = sa["rounds"]
    trained = [r for r in rounds if r["aggregated"]]
    parts = []
    if not trained:
        parts.append(f"NOTHING TRAINED: no round of {run['rounds_finished']} aggregated an update")
    if federated is not None:
        shown = with_interval(federated, pooled_test_size(audit), metric)
        parts.append(f"federated {metric} {shown}")
    if trained and len(trained) < len(rounds):
        parts.append(
            f"{len(rounds) - len(trained)} of {len(rounds)} rounds SKIPPED (nothing aggregated)"
        )
    if not run["complete"]:
        parts.append(f"INCOMPLETE: {run['rounds_finished']} of {run['rounds_planned']} rounds")
    institution = privacy.get("institution")
    if not privacy["dp_enabled"] and institution is None:
        parts.append("DP OFF (epsilon infinite for every institution that trained)")
    elif not privacy["dp_enabled"]:
        parts.append("sample-level DP off (epsilon infinite for one record)")
    else:
        spent = [as_float(c["epsilon"]) for c in privacy["clients"].values()]
        worst = max((e for e in spent if e is not None), default=0.0)
        parts.append(
            "epsilon infinite"
            if math.isinf(worst)
            else f"epsilon <= {epsilon_text(worst, 3)} per institution"
        )
    if institution is not None:
        parts.append(_institution_clause(institution))
    protocol = sa.get("protocol") or {}
    if not sa["enabled"]:
        parts.append("NO secure aggregation (the server saw each update)")
    elif not protocol:
        parts.append("secure aggregation configured, but no round ran it")
    elif protocol.get("adversary") == "curious" or not protocol.get("identities"):
        parts.append("secure aggregation against an honest-but-curious server only")
    else:
        parts.append("secure aggregation against a server that lies in its lists")
    parts.append("verified" if audit["integrity"]["verified"] else "VERIFICATION FAILED")
    return "; ".join(parts)


def _institution_clause(institution: dict) -> str:
    """Institution-level DP's epsilon: one institution's whole update (add/remove)."""
    epsilon = as_float(institution.get("epsilon"))
    if epsilon is None or math.isinf(epsilon):
        return "institution-level epsilon infinite"
    return f"institution-level epsilon <= {epsilon_text(epsilon, 3)} (one institution's update)"
