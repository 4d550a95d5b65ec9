"""The institutions' shards as ``securefed simulate`` prints them before round 0.

Read from the partition record (``partition.json``), so what the user sees is what the run
keeps: with any DP mechanism on, the training sizes and label histograms are not in it
(exact counts of the records, outside the guarantee) and are not printed either; each
institution's test split is.
"""

from __future__ import annotations


def partition_lines(summary: dict) -> list[str]:
    """One line for the scheme, then one per institution: its training and test histograms."""
    scheme = summary["scheme"]
    how = {
        "dirichlet": f"label skew, Dirichlet alpha {summary['alpha']}",
        "quantity": f"quantity skew, Dirichlet alpha {summary['alpha']}",
        "natural": f"natural, one institution per value of '{summary.get('column')}'",
        "iid": "IID",
    }.get(scheme, scheme)
    skew = summary.get("label_skew")
    head = f"partition: {how}" + (f" (label_skew {skew:.3f})" if skew is not None else "")
    lines = [head]
    if "training_counts" in summary:
        lines.append(f"  training counts {summary['training_counts']}")
    for c in summary["clients"]:
        train = c.get("train_labels")
        part = f"train {c['train_size']} {_histogram(train)}; " if train is not None else ""
        lines.append(
            f"  institution {c['client']}: {part}test {c['test_size']} "
            f"{_histogram(c['test_labels'])}"
        )
    return lines


def _histogram(counts: dict[str, int]) -> str:
    # parentheses, not brackets: the console reads [...] as markup and drops it
    return "(" + ", ".join(f"{label} {n}" for label, n in counts.items()) + ")"
