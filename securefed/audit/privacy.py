"""The audit's privacy section: per institution what DP-SGD spent, and by which accountant.

Sources: ``privacy/ledgers.json`` (each institution's recorded events, delta and noise
multiplier), ``results.json`` (the epsilon of record and the cross-check figures each ledger
reported at the end of the run) and ``metrics.jsonl`` (epsilon after every round). The
figures are shown as the run recorded them; ``verify`` recomputes each one from the events.
With DP off, every institution that trained has epsilon = infinity, shown as such.
Beside them, where ``privacy.distributed`` was on, the federation's institution-level epsilon
(``institution``: one institution as the unit; ``securefed.audit.institution``).

The section carries every event behind every epsilon it shows -- each institution's
(``recorded_events``) and each baseline's (``baseline_ledgers``: events, sigma, delta, steps
taken and given) -- so an audit.json alone, once the run folder is gone, still recomputes
them: ``securefed audit --verify AUDIT_DIR`` (``epsilons.check_audit_epsilons``).
"""

from __future__ import annotations

from securefed.audit.institution import institution_section, within_budget
from securefed.audit.source import RunSnapshot


def privacy_section(run: RunSnapshot) -> dict:
    dp = run.cfg.privacy.dp
    enabled = dp.enabled
    ledgers = run.ledgers["ledgers"] if run.ledgers else {}
    noise = run.ledgers["noise_multipliers"] if run.ledgers else {}
    results_privacy = run.results["privacy"] if run.results else {}
    reports = results_privacy.get("clients", {})
    last_epsilon = run.epsilon_after(run.metrics[-1]) if run.metrics else {}
    target = dp.target_epsilon if enabled else None
    clients = {}
    for c in (str(p["client"]) for p in run.partition.get("clients", [])):
        ledger, report = ledgers.get(c), reports.get(c, {})
        epsilon = report.get("epsilon", last_epsilon.get(c))
        clients[c] = {
            **_from_events((ledger or {}).get("events", [])),
            "epsilon": epsilon,
            "delta": (ledger or {}).get("delta", report.get("delta")),
            "accountant": report.get("accountant", dp.accountant),
            "cross_checks": report.get("cross_checks", {}),
            "cross_check_accountants": report.get("cross_check_accountants", {}),
            "noise_multiplier": noise.get(c),
            "clip_norm": dp.max_grad_norm if enabled else None,
            "rounds_budget_stopped": [
                r["round"] for r in run.metrics if int(c) in r["budget_stopped"]
            ],
            "within_budget": within_budget(epsilon, target),
            "ledger_recorded": ledger is not None,
            "recorded_events": list((ledger or {}).get("events", [])),
        }
    return {
        "dp_enabled": enabled,
        "accountant_of_record": dp.accountant,
        "target_epsilon": target,
        "delta_rule": dp.delta,
        "clip_norm": dp.max_grad_norm if enabled else None,
        "secure_mode": dp.secure_mode if enabled else None,
        "noise_source": dp.noise_source if enabled else None,
        "noise_sources_used": results_privacy.get("noise_sources"),
        "unit": "one record of one institution (add-or-remove-one), sample-level DP-SGD",
        "clients": clients,
        "epsilon_by_round": [
            {"round": r["round"], "clients": run.epsilon_after(r)} for r in run.metrics
        ],
        "baselines": {
            name: {
                c: v.get("epsilon")
                for c, v in (block.get("privacy") or {}).get("clients", {}).items()
            }
            for name, block in run.baselines.items()
        },
        "baseline_ledgers": {
            name: _baseline_ledgers(name, block) for name, block in run.baselines.items()
        },
        "institution": institution_section(run),
    }


BASELINE_LEDGER_KEYS = (
    "epsilon",
    "delta",
    "accountant",
    "cross_checks",
    "target_epsilon",
    "noise_multiplier",
    "sample_rate",
    "steps",
)


def _baseline_ledgers(name: str, block: dict) -> dict:
    """Per ledger of one baseline: its figures, its events, and where its budget stopped it
    (``planned_steps`` / ``stopped_on_budget``: centralized at the top, isolated per client)."""
    privacy = block.get("privacy") or {}
    out = {}
    for c, report in privacy.get("clients", {}).items():
        training = block["clients"].get(c, {}) if name == "isolated" else block
        out[c] = {
            **{k: report.get(k) for k in BASELINE_LEDGER_KEYS},
            "accountant_of_record": privacy.get("accountant_of_record"),
            "planned_steps": training.get("planned_steps"),
            "stopped_on_budget": training.get("stopped_on_budget"),
            "recorded_events": list(report.get("events", [])),
        }
    return out


def _from_events(events: list[dict]) -> dict:
    private = [e for e in events if e.get("kind") == "poisson_gaussian"]
    return {
        "steps": sum(int(e["steps"]) for e in events),
        "rounds_trained": sorted({int(e["round_index"]) for e in events}),
        "rounds_non_private": sorted(
            {int(e["round_index"]) for e in events if e.get("kind") == "non_private"}
        ),
        "sample_rates": sorted({float(e["sample_rate"]) for e in private}),
        "event_noise_multipliers": sorted({float(e["noise_multiplier"]) for e in private}),
        "events": len(events),
    }
