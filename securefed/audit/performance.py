"""The audit's accuracy, communication and cost sections.

Accuracy compares three trainings of the same backbone and adapter on the same test splits:

- federated: the final global adapter (last finished round), on the pooled test set and on
  each institution's own test split;
- centralized: one model on the pooled training data (what the law forbids), same evaluation;
- isolated: each institution alone. Per institution, its own model on its own test split;
  pooled, the mean over institutions of each own model on the pooled test set.
"""

from __future__ import annotations

from securefed.audit.source import RunSnapshot
from securefed.tasks.partition import majority_class

TRAININGS = ("federated", "centralized", "isolated")


def accuracy_section(run: RunSnapshot) -> dict:
    last = run.metrics[-1] if run.metrics else None
    federated = last["eval"] if last else None
    centralized = run.baselines.get("centralized")
    isolated = run.baselines.get("isolated")
    task = run.results["task"] if run.results else {}
    sample = federated or centralized or isolated
    metric_names = list(sample["pooled"]) if sample else []
    primary = task.get("primary_metric") or (metric_names[0] if metric_names else "accuracy")
    client_ids = [str(c["client"]) for c in run.partition.get("clients", [])]
    clients = {}
    for c in client_ids:
        clients[c] = {
            "federated": federated["clients"].get(c) if federated else None,
            "centralized": centralized["clients"].get(c) if centralized else None,
            "isolated": isolated["clients"][c]["own"] if isolated else None,
            "isolated_pooled": isolated["clients"][c].get("pooled") if isolated else None,
        }
    configured = list(run.cfg.baselines)
    return {
        "primary_metric": primary,
        "metrics": metric_names,
        "final_round": last["round"] if last else None,
        "pooled": {
            "federated": federated["pooled"] if federated else None,
            "centralized": centralized["pooled"] if centralized else None,
            "isolated": isolated["pooled"] if isolated else None,
        },
        "clients": clients,
        "learning_rates": (run.results or {}).get("tuning"),  # run.tuning; None: no grid
        "majority_class": majority_class(run.partition),
        "by_round": [
            {"round": r["round"], "pooled": r["eval"]["pooled"], "clients": r["eval"]["clients"]}
            for r in run.metrics
        ],
        "baselines": {
            name: {
                "configured": name in configured,
                "present": name in run.baselines,
                "steps": _baseline_steps(run.baselines.get(name)),
            }
            for name in ("centralized", "isolated")
        },
    }


def _baseline_steps(block: dict | None) -> int | dict | None:
    if block is None:
        return None
    if "steps" in block:
        return block["steps"]
    return {c: v.get("steps") for c, v in block.get("clients", {}).items()}


def communication_section(run: RunSnapshot) -> dict:
    rounds = []
    totals: dict[str, dict[str, int]] = {}
    for rec in run.metrics:
        per_client = {
            str(c): {"up": int(v["up"]), "down": int(v["down"])}
            for c, v in sorted(rec["bytes"].items(), key=lambda kv: int(kv[0]))
        }
        rounds.append({"round": rec["round"], "clients": per_client})
        for c, v in per_client.items():
            t = totals.setdefault(c, {"up": 0, "down": 0})
            t["up"] += v["up"]
            t["down"] += v["down"]
    return {
        "unit": "bytes",
        "what": "adapter-update traffic per client and round (protocol messages as serialized)",
        "rounds": rounds,
        "totals": dict(sorted(totals.items(), key=lambda kv: int(kv[0]))),
    }


def cost_section(run: RunSnapshot) -> dict:
    timing = (run.results or {}).get("timing")
    return {
        "rounds": [
            {"round": r["round"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"]} for r in run.metrics
        ],
        "federated_wall_s": sum(r["wall_s"] for r in run.metrics),
        "federated_cpu_s": sum(r["cpu_s"] for r in run.metrics),
        "invocation": timing,
        "device": run.environment.get("device"),
        "energy": _energy(run.energy),
    }


def _energy(ledger: dict | None) -> dict:
    """``energy.json``'s totals and how each figure was obtained (measured or estimated)."""
    if ledger is None:
        return {"recorded": False, "note": "not measured: the run folder has no energy.json"}
    total, invocations = ledger["total"], ledger["invocations"]
    return {
        "recorded": True,
        "energy_wh": total["energy_wh"],
        "kind": total["energy_kind"],
        "source": total["energy_source"],
        "basis": sorted({i["energy"]["basis"] for i in invocations}),
        "measured": sorted({m for i in invocations for m in i["energy"].get("measured", [])}),
        "modelled": sorted({m for i in invocations for m in i["energy"].get("modelled", [])}),
        "wall_s": total["wall_s"],
        "cpu_s": total["cpu_s"],
        "gpu_elapsed_s": total.get("gpu_elapsed_s"),
        "peak_rss_bytes": total["peak_rss_bytes"],
        "peak_gpu_memory_bytes": total.get("peak_gpu_memory_bytes"),
        "invocations": total["invocations"],
    }
