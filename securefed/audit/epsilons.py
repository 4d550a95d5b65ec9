"""Verification of every epsilon a run folder states, recomputed from its privacy events.

Claims checked, for each institution of ``privacy/ledgers.json``:

- ``metrics.jsonl``: epsilon after every round = the events up to that round, accounted by
  the accountant of record; exactly one event in each round it trained, none otherwise (a
  round skipped for too small a cohort trained no one), and none after the last recorded
  round (a truncated log);
- ``results.json``: the epsilon of record and each cross-check accountant's figure, from the
  report's own events, which must equal the ledger's;
- ``baselines/*.json``: the same for the baselines' own ledgers (not hash-chained, so this
  catches inconsistent edits only);
- sigma: every event's noise multiplier is the institution's recorded one, and the one the
  config sets when it sets one; each report's sigma, sampling rate and steps are its events'.

``check_audit_epsilons`` does the same for an ``audit.json`` alone (a committed audit whose run
folder is gone): every epsilon it shows, federated and baselines, from the events it carries.
"""

from __future__ import annotations

import functools

from securefed.audit.source import RunSnapshot
from securefed.audit.verification import Verification
from securefed.run.folder import LEDGERS, RESULTS, baseline_rel


@functools.lru_cache(maxsize=4096)
def _recompute(mechanisms: tuple[tuple, ...], delta: float, accountant: str) -> float:
    from securefed.privacy.accounting import recompute_epsilon  # lazy: dp_accounting to verify

    return recompute_epsilon([dict(m, round_index=0) for m in mechanisms], delta, accountant)


def epsilon_of(events: list[dict], delta: float, accountant: str) -> float:
    """``recompute_epsilon`` of recorded events, cached for the process: accounting is the slow
    part of verification (seconds per call). Epsilon depends on the multiset of mechanisms
    only, not on their order or round index, so equal multisets (an institution at the end and
    after its last round, institutions with one history, a rebuilt audit) are accounted once."""
    key = tuple(
        sorted(tuple(sorted((k, v) for k, v in e.items() if k != "round_index")) for e in events)
    )
    return _recompute(key, float(delta), accountant)


def check_epsilons(run: RunSnapshot, out: Verification) -> None:
    if run.ledgers is None:
        if run.metrics:
            out.expect("privacy ledgers", LEDGERS, "present", "missing")
        return
    accountant = run.ledgers["accountant"]
    last_round = run.metrics[-1]["round"] if run.metrics else -1
    dp = run.cfg.privacy.dp
    configured = dp.noise_multiplier if dp.enabled else None
    sigmas = run.ledgers["noise_multipliers"]
    for c, ledger in run.ledgers["ledgers"].items():
        events, delta = ledger.get("events", []), ledger["delta"]
        where = f"institution {c}"
        _check_sigma(events, sigmas.get(c), configured, f"{where}, {LEDGERS}", out)
        for rec in run.metrics:
            upto = [e for e in events if e["round_index"] <= rec["round"]]
            out.expect(
                "epsilon after round",
                f"{where}, metrics.jsonl round {rec['round']}",
                run.epsilon_after(rec).get(c),
                epsilon_of(upto, delta, accountant),
            )
            trained = (
                int(c) in rec["sampled"]
                and int(c) not in rec["budget_stopped"]
                and "skipped" not in rec  # skipped before anyone trained: no event may exist
            )
            in_round = sum(1 for e in events if e["round_index"] == rec["round"])
            out.expect("events of round", f"{where}, round {rec['round']}", int(trained), in_round)
        out.expect(
            "events after the last recorded round",
            where,
            0,
            sum(1 for e in events if e["round_index"] > last_round),
        )
    results_privacy = run.results["privacy"] if run.results else None
    if results_privacy is not None:
        reports = results_privacy.get("clients", {})
        for c, ledger in run.ledgers["ledgers"].items():
            out.expect(
                "events in results.json",
                f"institution {c}",
                ledger.get("events"),
                reports.get(c, {}).get("events"),
            )
        _check_reports(results_privacy, RESULTS, configured, out)
    for name, block in run.baselines.items():
        if block.get("privacy") is not None:
            _check_reports(block["privacy"], baseline_rel(name), configured, out)


def _check_reports(privacy: dict, where: str, configured: float | None, out: Verification) -> None:
    """A ``ClientPrivacy.report()``: each ledger report's figures from its own events."""
    accountant = privacy.get("accountant_of_record", "pld")
    for c, report in privacy.get("clients", {}).items():
        place = f"institution {c}, {where}"
        _check_figures(report, report.get("events", []), accountant, place, out)
        _check_sigma(report.get("events", []), None, configured, place, out)


def _check_figures(
    shown: dict, events: list[dict], accountant: str, place: str, out: Verification
) -> None:
    """The epsilon, cross-checks, sigma, sampling rate and steps ``shown`` for ``events``."""
    from securefed.privacy.accounting import ACCOUNTANTS  # lazy: dp_accounting to verify

    delta = shown.get("delta")
    if delta is None:
        out.expect("delta recorded", place, "a delta", None)
        return
    out.expect(
        "epsilon of record", place, shown.get("epsilon"), epsilon_of(events, delta, accountant)
    )
    for name, value in (shown.get("cross_checks") or {}).items():
        if name in ACCOUNTANTS:
            out.expect(
                f"cross-check epsilon ({name})", place, value, epsilon_of(events, delta, name)
            )
    private = [e for e in events if e.get("kind") == "poisson_gaussian"]
    for key in ("noise_multiplier", "sample_rate"):
        if key in shown and private:
            values = {e[key] for e in private}
            out.expect(f"{key} of the events", place, shown[key], _one(values))
    if "steps" in shown:
        out.expect("steps of the events", place, shown["steps"], sum(e["steps"] for e in events))


def _check_sigma(
    events: list[dict],
    recorded: float | None,
    configured: float | None,
    place: str,
    out: Verification,
) -> None:
    """Every DP event used the sigma recorded for this ledger, and the one the config sets."""
    found = sorted({e["noise_multiplier"] for e in events if e.get("kind") == "poisson_gaussian"})
    if found and recorded is not None:
        out.expect("events' sigma = recorded sigma", place, [recorded], found)
    if found and configured is not None:
        out.expect("events' sigma = configured sigma", place, [configured], found)


def _one(values: set) -> object:
    return next(iter(values)) if len(values) == 1 else None


def check_audit_epsilons(audit: dict, out: Verification) -> None:
    """Every epsilon an ``audit.json`` shows, from the events it carries: each institution's
    (at the end and after every round) and each baseline's, with the cross-checks and sigma."""
    privacy = audit.get("privacy") or {}
    accountant = privacy.get("accountant_of_record") or "pld"
    clients = privacy.get("clients") or {}
    for c, shown in clients.items():
        place = f"institution {c}, audit.json privacy.clients"
        if "recorded_events" not in shown:
            out.expect("events in the audit", place, "recorded_events", "absent")
        elif shown.get("ledger_recorded"):
            _check_figures(shown, shown["recorded_events"], accountant, place, out)
    for row in privacy.get("epsilon_by_round") or []:
        for c, epsilon in row["clients"].items():
            shown = clients.get(c) or {}
            upto = [e for e in shown.get("recorded_events", []) if e["round_index"] <= row["round"]]
            place = f"institution {c}, audit.json privacy.epsilon_by_round round {row['round']}"
            delta = shown.get("delta")
            out.expect(
                "epsilon after round",
                place,
                epsilon,
                epsilon_of(upto, delta, accountant) if delta else None,
            )
    ledgers = privacy.get("baseline_ledgers") or {}
    for name, shown_epsilons in (privacy.get("baselines") or {}).items():
        for c, epsilon in shown_epsilons.items():
            place = f"baseline {name}, ledger {c}, audit.json"
            shown = (ledgers.get(name) or {}).get(c)
            if shown is None:
                out.expect("baseline events in the audit", place, "recorded_events", "absent")
                continue
            out.expect("baseline epsilon shown", place, epsilon, shown.get("epsilon"))
            events = shown.get("recorded_events", [])
            own = shown.get("accountant_of_record") or accountant
            _check_figures(shown, events, own, place, out)
