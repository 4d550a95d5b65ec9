"""The audit's secure-aggregation section: parameters, and per round who took part and who dropped.

Built from the config, the metrics log (who was sampled, who stopped for budget, whose update
was aggregated) and each round's transcript ``secagg/round-NNNN.json`` (the protocol's own
record: round plan, participants per stage, simulated dropouts, bytes). With secure
aggregation off the section says so and lists the plain-FedAvg rounds: the server saw every
update in the clear.
"""

from __future__ import annotations

from securefed.audit.source import RunSnapshot
from securefed.run.folder import transcript_rel
from securefed.secagg import STAGES

PLAN_KEYS = ("graph", "degree", "threshold", "cohort_size")  # derived per round
PROTOCOL_KEYS = (
    "protocol",
    "adversary",
    "security_bits",
    "corrupt_fraction",
    "dropout_budget",
    "identities",
)
QUANTIZATION_KEYS = ("clip_norm", "bits", "modulus_bits", "extras_bound")


def secure_aggregation_section(run: RunSnapshot) -> dict:
    config = run.config["secure_aggregation"]  # shown as written; read through run.cfg
    enabled = run.cfg.secure_aggregation.enabled
    rounds = [_round(rec, run.transcripts.get(rec["round"]), enabled) for rec in run.metrics]
    return {
        "enabled": enabled,
        "configured": {k: v for k, v in config.items() if k != "enabled"},
        "stages": list(STAGES),
        "protocol": _as_run(_protocol(run.transcripts), run.node_joins),
        "rounds": rounds,
        "aborted_rounds": [r["round"] for r in rounds if r["aborted"] is not None],
        "entropy_sources": sorted({r["entropy"] for r in rounds if r["entropy"] is not None}),
    }


def _protocol(transcripts: dict[int, dict]) -> dict | None:
    """The run-wide protocol settings, as the first completed round's transcript states them."""
    for _, transcript in sorted(transcripts.items()):
        if "aborted" not in transcript:
            quantization = transcript.get("quantization", {})
            return {
                **{k: transcript.get(k) for k in PROTOCOL_KEYS},
                "quantization": {k: quantization.get(k) for k in QUANTIZATION_KEYS},
            }
    return None


ADVERSARY_KEY = "secure_aggregation.adversary"  # as a node's join record names it (run-config key)


def _as_run(protocol: dict | None, joins: dict[str, list[dict]]) -> dict | None:
    """On Flower the consistency check and the signatures are the nodes' to run: the adversary
    the protocol withstood is the weakest any node joined with (its ``join.jsonl``), not what
    the server's transcript assumes. Simulate (no node records): the transcript's."""
    accepted = [j["pinned"] for js in joins.values() for j in js if j.get("accepted")]
    if protocol is None or not accepted:
        return protocol
    curious = any(a[ADVERSARY_KEY] != "semi_malicious" for a in accepted)
    return {
        **protocol,
        "adversary": "curious" if curious else "semi_malicious",
        "identities": all(a.get("identities") for a in accepted),
        "stated_by": f"the join records of {len(joins)} node(s)",
    }


def _round(rec: dict, transcript: dict | None, enabled: bool) -> dict:
    stopped = list(rec["budget_stopped"])
    skipped = rec.get("skipped")  # too few left to aggregate: skipped before anyone trained
    trained = [] if skipped else [c for c in rec["sampled"] if c not in stopped]
    out = {
        "round": rec["round"],
        "sampled": list(rec["sampled"]),
        "budget_stopped": stopped,
        "trained": trained,
        "aggregated": list(rec["aggregated"]),
        "transcript": None,
        "plan": None,
        "participants": None,
        "dropouts": None,
        "wrap_count": None,
        "error_bound_delta": None,
        "entropy": None,
        "aborted": None,
    }
    if not trained:
        out["aborted"] = f"skipped: {skipped}" if skipped else "no institution trained this round"
    if not enabled or transcript is None:
        if enabled and trained:
            out["aborted"] = "no transcript recorded for this round"
        return out
    out["transcript"] = transcript_rel(rec["round"])
    if "aborted" in transcript:
        out["aborted"] = str(transcript["aborted"])
        return out
    out["plan"] = {k: transcript.get(k) for k in PLAN_KEYS}
    quantization = transcript.get("quantization", {})
    out["error_bound_delta"] = quantization.get("error_bound_delta")
    participants = transcript.get("participants", {})
    out["participants"] = {k: list(participants.get(k, [])) for k in ("invited", *STAGES)}
    out["dropouts"] = {s: list(transcript.get("dropouts", {}).get(s, [])) for s in STAGES}
    out["wrap_count"] = transcript.get("wrap_count")
    out["entropy"] = transcript.get("entropy")
    return out
