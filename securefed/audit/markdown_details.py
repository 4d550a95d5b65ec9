"""Markdown of the record details: bytes, time, partition, environment, config, integrity."""

from __future__ import annotations

import yaml

from securefed.audit.tables import fmt, present, table
from securefed.privacy.display import epsilon_text


def communication_markdown(comm: dict) -> str:
    ids = list(comm["totals"])
    rows = [
        [
            r["round"],
            *(f"{v['up']} / {v['down']}" if (v := r["clients"].get(c)) else None for c in ids),
        ]
        for r in comm["rounds"]
    ]
    rows.append(
        ["total", *(f"{comm['totals'][c]['up']} / {comm['totals'][c]['down']}" for c in ids)]
    )
    return (
        f"## 4. Bytes sent per client per round\n\n{comm['what']}; up / down, in bytes.\n\n"
        + table(["round", *(f"inst. {c}" for c in ids)], rows)
    )


def cost_markdown(cost: dict) -> str:
    rows = [[r["round"], r["wall_s"], r["cpu_s"]] for r in cost["rounds"]]
    rows.append(["federated total", cost["federated_wall_s"], cost["federated_cpu_s"]])
    inv = cost["invocation"] or {}
    energy = cost["energy"]
    device = f"\n\nDevice: {fmt(cost['device'])}." if cost["device"] else ""
    parts = [f"## 5. Time, compute and energy{device}", table(["round", "wall s", "CPU s"], rows)]
    if inv.get("this_invocation_wall_s") is not None:
        parts.append(
            "Last invocation of `securefed simulate` (federation, baselines, setup): "
            f"wall {fmt(inv['this_invocation_wall_s'])} s, "
            f"CPU {fmt(inv.get('this_invocation_cpu_s'))} s; resumed: {fmt(inv.get('resumed'))}."
        )
    if not energy["recorded"]:
        parts.append(f"Energy: {energy['note']}.")
    else:
        parts.append(
            table(
                ["", "whole run"],
                present(
                    [
                        ["energy (Wh)", energy["energy_wh"]],
                        ["kind", energy["kind"]],
                        ["source", energy["source"]],
                        ["measured", energy["measured"]],
                        ["modelled", energy["modelled"]],
                        ["wall s / CPU s", f"{fmt(energy['wall_s'])} / {fmt(energy['cpu_s'])}"],
                        ["GPU elapsed s", energy["gpu_elapsed_s"]],
                        ["peak host memory (MB)", energy["peak_rss_bytes"] / 1e6],
                        ["peak GPU memory (MB)", _mb(energy["peak_gpu_memory_bytes"])],
                        ["invocations", energy["invocations"]],
                    ]
                ),
            )
        )
        parts.append("How the energy figure was obtained: " + " ".join(energy["basis"]))
    return "\n\n".join(parts)


def _mb(n: int | None) -> float | None:
    return None if n is None else n / 1e6


def partition_markdown(part: dict) -> str:
    rows = [
        [c["client"], c.get("train_size"), c["test_size"], c.get("train_labels"), c.get("groups")]
        for c in part.get("clients", [])
    ]
    facts = [
        ("scheme", part.get("scheme")),
        ("column", part.get("column")),
        ("alpha", part.get("alpha")),
        ("seed", part.get("seed")),
        ("examples", part.get("num_examples")),
        ("test fraction", part.get("test_fraction")),
        ("label skew", part.get("label_skew")),
        ("training counts", part.get("training_counts")),
    ]
    said = ", ".join(f"{name} {fmt(value)}" for name, value in facts if value is not None)
    header = ["institution", "train", "test", "train labels"]
    if any(c.get("groups") is not None for c in part.get("clients", [])):
        header.append("groups")
    return f"## 6. Data partition\n\n{said.capitalize()}.\n\n" + table(
        header, [row[: len(header)] for row in rows]
    )


def environment_markdown(env: dict) -> str:
    libs = env.get("libraries", {})
    rows = [
        ["platform", env.get("platform")],
        ["device", env.get("device")],
        ["backbone", env.get("backbone")],
        ["model kind", env.get("model_kind")],
        ["base weights sha256", env.get("base_weights_sha256")],
        ["base weights unchanged", env.get("base_weights_unchanged")],
        ["vector spec hash", env.get("vector_spec_hash")],
    ]
    return (
        "## 7. Environment and library versions\n\n"
        + table(["", ""], present(rows))
        + "\n\n"
        + table(["library", "version"], [[k, v] for k, v in libs.items()])
    )


def config_markdown(cfg: dict) -> str:
    text = yaml.safe_dump(cfg["values"], sort_keys=False)
    return f"## 8. Configuration\n\n`config.yaml`, sha256 `{cfg['sha256']}`:\n\n```yaml\n{text}```"


def integrity_markdown(integrity: dict) -> str:
    status = "**passed**" if integrity["verified"] else "**FAILED**"
    parts = [
        f"## 9. Integrity\n\nVerification {status}: {integrity['checks']} checks over "
        f"{integrity['records']} hash-chained records; chain head `{integrity['chain_head']}`. "
        "Re-run with `securefed audit --verify RUN_DIR`."
    ]
    if integrity["mismatches"]:
        parts.append(
            table(
                ["check", "where", "recorded", "found"],
                [
                    [m["check"], m["where"], m["recorded"], m["found"]]
                    for m in integrity["mismatches"]
                ],
            )
        )
    if integrity["notes"]:
        parts.append("\n".join(f"- {n}" for n in integrity["notes"]))
    return "\n\n".join(parts)


def sources_markdown(sources: dict) -> str:
    return "## Files this audit was built from\n\n" + table(
        ["file", "sha256"], [[k, f"`{v}`"] for k, v in sources.items()]
    )


def epsilon_by_round_markdown(by_round: list[dict], ids: list[str]) -> str:
    """Each institution's epsilon after each round (accountant of record), rounded up."""
    rows = [[r["round"], *(epsilon_text(r["clients"].get(c)) for c in ids)] for r in by_round]
    return "Epsilon after each round (accountant of record):\n\n" + table(
        ["round", *(f"inst. {c}" for c in ids)], rows
    )


# Who the figures assume sees what the canaries are scored on (docs/empirical-audit.md).
OBSERVERS = {
    "gradient": (
        "Observer: the scores read each carrier's own privatized gradient at every DP-SGD "
        "step, less its records' clipped part: the strongest observer the sample-level claim "
        "allows (it knows every other record), far more than the server, which sees only the "
        "masked sum of updates. The optimizer after the noise is outside what it tests."
    ),
    "input": (
        "Observer: the scores are the canaries' losses under the final global adapter, which "
        "anyone holding the released adapter can compute."
    ),
}


def empirical_markdown(empirical: dict, scores_plot: str | None) -> str:
    """The leak measured by the run's canaries beside the epsilon claimed for them;
    ``scores_plot``: the image of the canary scores (None: not drawn)."""
    head = "## 1b. Empirical privacy: the leak measured beside the claim\n\n"
    if "epsilon_lower_bound" not in empirical:
        return head + f"No canaries: {empirical['note']}."
    low, high = empirical["epsilon_estimate_interval"]
    guesses = empirical["lower_bound_guesses"]
    carriers = ", ".join(str(c) for c in empirical["plan"]["institutions"])
    rows = [
        [
            "claimed epsilon (largest among the carriers)",
            epsilon_text(empirical["claimed_epsilon"]),
        ],
        ["delta", empirical["delta"]],
        [
            f"one-run lower bound ({100 * empirical['confidence']:.0f}% confidence)",
            empirical["epsilon_lower_bound"],
        ],
        ["lower bound's ceiling with this many canaries", empirical["lower_bound_ceiling"]],
        ["one-shot estimate", empirical["epsilon_estimate"]],
        [f"estimate interval ({100 * empirical['confidence']:.0f}%)", f"{fmt(low)} - {fmt(high)}"],
        [
            "lower bound exceeds the claim",
            "YES" if empirical["lower_bound_exceeds_claim"] else "no",
        ],
    ]
    text = (
        f"{empirical['canaries']} {empirical['canary_kind']} canaries in institution(s) "
        f"{carriers}, {empirical['included']} included by their secret coins. The lower bound "
        "(Steinke, Nasr and Jagielski 2023) holds at the stated confidence for any "
        f"implementation: it guessed {guesses['in']} in and {guesses['out']} out, "
        f"{guesses['correct']} right. The estimate (Andrew et al. 2024) fits one Gaussian to "
        "each group of scores; it is no bound. "
        + OBSERVERS[empirical["canary_kind"]]
        + "\n\n"
        + table(["", ""], present(rows))
    )
    return head + text + (f"\n\n![canary scores]({scores_plot})" if scores_plot else "")
