"""Verification of every epsilon a run folder states, recomputed from its privacy events.

Claims checked, for each institution of ``privacy/ledgers.json``:

- ``metrics.jsonl``: epsilon after every round = the events up to that round, accounted by
  the accountant of record; exactly one event in each round it trained, none otherwise (a
  round skipped for too small a cohort trained no one), and none after the last recorded
  round (a truncated log);
- ``results.json``: the epsilon of record and each cross-check accountant's figure, from the
  report's own events, which must equal the ledger's;
- ``baselines/*.json``: the same for the baselines' own ledgers (not hash-chained, so this
  catches inconsistent edits only).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from securefed.audit.source import RunSnapshot
from securefed.run.folder import LEDGERS, RESULTS, baseline_rel

if TYPE_CHECKING:
    from securefed.audit.verify import Verification


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
    accountant = run.ledgers.get("accountant", "pld")
    last_round = run.metrics[-1]["round"] if run.metrics else -1
    for c, ledger in run.ledgers.get("ledgers", {}).items():
        events, delta = ledger.get("events", []), ledger["delta"]
        where = f"institution {c}"
        for rec in run.metrics:
            upto = [e for e in events if e["round_index"] <= rec["round"]]
            out.expect(
                "epsilon after round",
                f"{where}, metrics.jsonl round {rec['round']}",
                rec.get("epsilon", {}).get(c),
                epsilon_of(upto, delta, accountant),
            )
            trained = (
                int(c) in rec["sampled"]
                and int(c) not in rec.get("budget_stopped", [])
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
    results_privacy = (run.results or {}).get("privacy")
    if results_privacy is not None:
        reports = results_privacy.get("clients", {})
        for c, ledger in run.ledgers.get("ledgers", {}).items():
            out.expect(
                "events in results.json",
                f"institution {c}",
                ledger.get("events"),
                reports.get(c, {}).get("events"),
            )
        _check_reports(results_privacy, RESULTS, out)
    for name, block in run.baselines.items():
        if block.get("privacy") is not None:
            _check_reports(block["privacy"], baseline_rel(name), out)


def _check_reports(privacy: dict, where: str, out: Verification) -> None:
    """A ``ClientPrivacy.report()``: each ledger report's figures from its own events."""
    from securefed.privacy.accounting import ACCOUNTANTS  # lazy: dp_accounting to verify

    accountant = privacy.get("accountant_of_record", "pld")
    for c, report in privacy.get("clients", {}).items():
        events, delta = report.get("events", []), report.get("delta")
        place = f"institution {c}, {where}"
        if delta is None:
            out.expect("delta recorded", place, "a delta", None)
            continue
        out.expect(
            "epsilon of record",
            place,
            report.get("epsilon"),
            epsilon_of(events, delta, accountant),
        )
        for name, value in (report.get("cross_checks") or {}).items():
            if name in ACCOUNTANTS:
                out.expect(
                    f"cross-check epsilon ({name})",
                    place,
                    value,
                    epsilon_of(events, delta, name),
                )
