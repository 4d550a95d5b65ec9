"""The audit's institution-level DP (``privacy.distributed``): the federation's epsilon for the
content of an institution's update (not its participation: ``events.INSTITUTION_PROTECTS``),
beside each institution's sample-level epsilon, and its verification.

Source: ``privacy/ledgers.json`` ``institution`` (the plan and the ledger: one event per round
whose noisy sum was released, with the noise shares that reached it) and ``results.json``
``privacy.institution`` (the epsilon the run reported). The section carries the events, so
``check_audit_institution`` recomputes the epsilon from an ``audit.json`` alone.

Verified (``check_institution``): the ledger's neighbouring relation is the one this version
accounts (``events.INSTITUTION_RELATION``); the epsilon in ``results.json`` from its events;
exactly one event in each round whose sum was released (none in a skipped or aborted round);
each event's noise contributors = the institutions aggregated that round (the survivors'
shares, not the planned ones); each event's noise, sensitivities and colluders = the plan's;
the plan's colluders = the bound the run config gives (``secagg.params.cohort_colluders`` of
``training.clients_per_round`` and ``secure_aggregation.corrupt_fraction``), so a ledger that
counts a colluder's share as protecting does not verify.
"""

from __future__ import annotations

import functools

from securefed.audit.source import RunSnapshot, as_float
from securefed.audit.tables import fmt, table
from securefed.audit.verification import Verification
from securefed.privacy.display import epsilon_text
from securefed.privacy.distributed.events import (
    INSTITUTION_PROTECTS,
    INSTITUTION_RELATION,
    protecting_shares,
)
from securefed.run.folder import LEDGERS, RESULTS
from securefed.secagg.params import cohort_colluders


def within_budget(epsilon: object, target: object) -> bool | None:
    """epsilon <= target, or None where either is not a number."""
    eps, budget = as_float(epsilon), as_float(target)
    if eps is None or budget is None:
        return None
    return eps <= budget


_PLAN_FIELDS = ("mechanism", "l2_sensitivity", "l1_sensitivity", "local_variance", "colluders")


def institution_section(run: RunSnapshot) -> dict | None:
    """The institution-level block of the privacy section; None when it was off."""
    saved = (run.ledgers or {}).get("institution")
    if saved is None:
        return None
    reported = (run.results["privacy"] if run.results else {}).get("institution") or {}
    ledger, plan = saved["ledger"], saved["plan"]
    epsilon = reported.get("epsilon")
    target = ledger.get("target_epsilon")
    return {
        "protects": INSTITUTION_PROTECTS,
        "unit": "one institution",
        "neighbouring_relation": ledger["neighbouring_relation"],
        "mechanism": plan["mechanism"],
        "bits": plan["bits"],
        "clip_norm": plan["clip_norm"],
        "calibrated_for_survivors": plan["min_survivors"],
        "colluders": plan["colluders"],
        "invitation_rate": saved.get("invitation_rate"),
        "claimed_sample_rate": reported.get("claimed_sample_rate"),
        "epsilon": epsilon,
        "delta": ledger["delta"],
        "target_epsilon": target,
        "within_budget": within_budget(epsilon, target),
        "gaussian_reference_epsilon": reported.get("gaussian_reference_epsilon"),
        "accountant": reported.get("accountant"),
        "noise_contributors_by_round": {
            str(e["round_index"]): e["noise_contributors"] for e in ledger["events"]
        },
        "plan": plan,
        "recorded_events": list(ledger["events"]),
        "caveats": reported.get("caveats", []),
    }


@functools.lru_cache(maxsize=256)
def _epsilon(events: tuple[tuple, ...], delta: float) -> float:
    from securefed.privacy.distributed.accounting import institution_epsilon  # lazy: scipy
    from securefed.privacy.distributed.events import event_from_json  # lazy: with it

    return institution_epsilon([event_from_json(dict(e)) for e in events], delta)


def epsilon_of(events: list[dict], delta: float) -> float:
    """The institution-level epsilon of recorded events (cached: equal lists account once)."""
    return _epsilon(tuple(tuple(sorted(e.items())) for e in events), float(delta))


def check_institution(run: RunSnapshot, out: Verification) -> None:
    """The run folder's institution-level claims against its ledger and its metrics."""
    saved = (run.ledgers or {}).get("institution")
    enabled = run.cfg.privacy.distributed.enabled
    if saved is None:
        if enabled and run.ledgers is not None:
            out.expect("institution-level ledger", LEDGERS, "present", "missing")
        return
    ledger, plan = saved["ledger"], saved["plan"]
    cfg = run.cfg
    out.expect(
        "institution-level colluders = the config's bound",
        LEDGERS,
        cohort_colluders(cfg.training.clients_per_round, cfg.secure_aggregation.corrupt_fraction),
        plan["colluders"],
    )
    out.expect(
        "institution-level neighbouring relation",
        LEDGERS,
        INSTITUTION_RELATION,
        ledger["neighbouring_relation"],
    )
    events = ledger["events"]
    for e in events:
        for key in _PLAN_FIELDS:
            where = f"{LEDGERS} institution round {e['round_index']}"
            out.expect(f"event {key} = plan", where, plan[key], e[key])
    by_round = {e["round_index"]: e for e in events}
    for rec in run.metrics:
        released = bool(rec["aggregated"]) and "skipped" not in rec
        event = by_round.get(rec["round"])
        where = f"institution-level ledger, round {rec['round']}"
        out.expect("event for a released sum", where, released, event is not None)
        if event is not None:
            out.expect(
                "noise contributors = institutions aggregated",
                where,
                len(rec["aggregated"]),
                event["noise_contributors"],
            )
    last_round = run.metrics[-1]["round"] if run.metrics else -1
    out.expect(
        "institution-level events after the last recorded round",
        LEDGERS,
        0,
        sum(1 for e in events if e["round_index"] > last_round),
    )
    reported = (run.results["privacy"] if run.results else {}).get("institution")
    if reported is not None:
        out.expect("institution-level events in results.json", RESULTS, events, reported["events"])
        out.expect(
            "institution-level epsilon",
            RESULTS,
            reported["epsilon"],
            epsilon_of(events, ledger["delta"]),
        )


def check_audit_institution(audit: dict, out: Verification) -> None:
    """The institution-level epsilon an ``audit.json`` shows, from the events it carries."""
    shown = (audit.get("privacy") or {}).get("institution")
    if shown is None:
        return
    out.expect(
        "institution-level epsilon",
        "audit.json privacy.institution",
        shown["epsilon"],
        epsilon_of(shown["recorded_events"], shown["delta"]),
    )


def institution_markdown(section: dict | None) -> str:
    """The audit's paragraph and table on institution-level DP ('' when it was off)."""
    if section is None:
        return ""
    s, c = section, section["colluders"]
    head = (
        "### Institution-level DP (distributed noise inside the secure sum)\n\n"
        f"Protects {s['protects']}. Neighbouring relation: {s['neighbouring_relation']}. "
        f"Mechanism **{s['mechanism']}**, aggregate width "
        f"{s['bits']} bits, clip norm {fmt(s['clip_norm'])} per institution update; noise "
        f"calibrated for {s['calibrated_for_survivors']} surviving institutions, each protected "
        f"by {protecting_shares(s['calibrated_for_survivors'], c)} shares (its own and the "
        f"c = {c} colluding institutions' shares are not counted), and accounted with the "
        f"shares that reached each sum. **Epsilon {epsilon_text(s['epsilon'])}** at "
        f"delta {fmt(s['delta'])} (target {epsilon_text(s['target_epsilon'])}; a continuous "
        f"Gaussian of the same variance: {epsilon_text(s['gaussian_reference_epsilon'])}). "
        f"Institutions were invited at "
        f"rate {fmt(s['invitation_rate'])} as fixed-size cohorts; amplification claimed: "
        f"sampling rate {fmt(s['claimed_sample_rate'])}. Accountant: {s['accountant']}."
    )
    rows = [[r, n, protecting_shares(n, c)] for r, n in s["noise_contributors_by_round"].items()]
    columns = ["round", "noise shares in the sum", "shares protecting each institution"]
    caveats = "\n".join(f"- {c}" for c in s["caveats"])
    return "\n\n".join(p for p in (head, table(columns, rows), caveats) if p)
