"""Test harness: drive the client and server state machines stage by stage, with seeded keys.

Unlike ``simulate_round`` it takes encoded uint32 inputs directly (so sums can be checked
exactly mod 2^32), exposes every message between the stages (so a test can play a
malicious server), and keeps each client's masked input (which a malicious server sees).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np

from securefed.secagg import RoundContext, SecAggClient, SecAggParams, SecAggServer, crypto
from securefed.secagg.entropy import TestOnlyRandomnessWarning, seeded_entropy
from securefed.secagg.roster import Roster


def make_context(
    cohort_size: int,
    *,
    dimension: int = 8,
    extras_count: int = 0,
    round_index: int = 0,
    params: SecAggParams | None = None,
    global_adapter_hash: bytes = b"global-adapter".ljust(32, b"."),
) -> RoundContext:
    return RoundContext(
        round_index=round_index,
        cohort_size=cohort_size,
        params=params or SecAggParams(adversary="curious", corrupt_fraction=0.0),
        global_adapter_hash=global_adapter_hash,
        vector_spec_hash=b"vector-spec".ljust(32, b"."),
        dimension=dimension,
        extras_count=extras_count,
    )


def pinned_entropy(label: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TestOnlyRandomnessWarning)
        return seeded_entropy(label)


def pinned_identities(ids: Iterable[int], label: bytes) -> tuple[Roster, dict[int, bytes]]:
    """A roster and the Ed25519 identity keys behind it, drawn from a pinned stream."""
    draw = pinned_entropy(label)
    keys = {u: draw(32) for u in ids}
    return Roster({u: crypto.ed25519_public_key(k) for u, k in keys.items()}), keys


class ManualRound:
    """One round, driven one stage at a time; ``contexts`` may differ per client.

    A semi-malicious context needs identities (the client refuses it without a roster): when
    none are given, pinned ones are drawn, as a real run draws fresh ones.
    """

    def __init__(
        self,
        ids: Iterable[int],
        context: RoundContext,
        *,
        contexts: Mapping[int, RoundContext] | None = None,
        roster: Roster | None = None,
        identity_keys: Mapping[int, bytes] | None = None,
        seed: bytes = b"harness",
    ) -> None:
        self.ids = sorted(ids)
        contexts = contexts or {}
        if roster is None and context.params.adversary != "curious":
            roster, identity_keys = pinned_identities(self.ids, seed + b"/identities")
        self.clients = {
            u: SecAggClient(
                u,
                contexts.get(u, context),
                identity_key=(identity_keys or {}).get(u),
                roster=roster,
                entropy=pinned_entropy(seed + b"/%d/%d" % (context.round_index, u)),
            )
            for u in self.ids
        }
        self.server = SecAggServer(context, invited=frozenset(self.ids), roster=roster)
        self.masked: dict[int, np.ndarray] = {}  # what a malicious server would keep

    def advertise(self, drop: Iterable[int] = ()):
        gone = set(drop)
        for u in self.ids:
            if u not in gone:
                self.server.accept(self.clients[u].advertise_keys())
        return self.server.close_advertise_keys()

    def share(self, directory, drop: Iterable[int] = ()):
        gone = set(drop)
        for u in self.server.participants["advertise_keys"]:
            if u not in gone:
                self.server.accept(self.clients[u].share_keys(directory))
        return self.server.close_share_keys()

    def mask(self, deliveries, inputs: Mapping[int, np.ndarray], drop: Iterable[int] = ()):
        gone = set(drop)
        for u in self.server.participants["share_keys"]:
            if u not in gone:
                msg = self.clients[u].masked_input(deliveries[u], inputs[u])
                self.masked[u] = msg.vector.copy()
                self.server.accept(msg)
        return self.server.close_masked_input()

    def sign(self, survivor_sets, drop: Iterable[int] = ()):
        gone = set(drop)
        for u in self.server.participants["masked_input"]:
            if u not in gone:
                self.server.accept(self.clients[u].sign_survivors(survivor_sets[u]))
        return self.server.close_consistency_check()

    def unmask(self, requests, drop: Iterable[int] = ()):
        gone = set(drop)
        responses = {}
        for u in self.server.participants["consistency_check"]:
            if u not in gone:
                responses[u] = self.clients[u].unmask(requests[u])
                self.server.accept(responses[u])
        return responses

    def run(
        self, inputs: Mapping[int, np.ndarray], drops: Mapping[str, Iterable[int]] | None = None
    ):
        """All five stages; returns the unmasked uint32 total."""
        drops = drops or {}
        directory = self.advertise(drops.get("advertise_keys", ()))
        deliveries = self.share(directory, drops.get("share_keys", ()))
        survivor_sets = self.mask(deliveries, inputs, drops.get("masked_input", ()))
        requests = self.sign(survivor_sets, drops.get("consistency_check", ()))
        self.unmask(requests, drops.get("unmasking", ()))
        return self.server.close_unmasking()


def random_inputs(ids: Iterable[int], length: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: rng.integers(0, 2**32, size=length, dtype=np.uint32) for u in ids}
