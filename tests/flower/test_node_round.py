"""The node-side replay: a round driven stage by stage through fresh NodeRound objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import RecordDict

from securefed.errors import ProtocolAbort
from securefed.flower.node_round import Identity, NodeRound, keyed_entropy
from securefed.secagg import RoundContext, SecAggParams, SecAggServer, decode_sum, encode_input
from securefed.secagg.stages import STAGE

D, ROUND = 50, 3
PARAMS = SecAggParams(threshold="auto", dropout_budget=0.34, adversary="curious")  # no roster


def _context(n: int) -> RoundContext:
    return RoundContext(ROUND, n, PARAMS, b"g" * 32, b"s" * 32, D, 2)


def _fresh(states: dict[int, RecordDict], u: int, n: int) -> NodeRound:
    """A new NodeRound per call, as Flower starts a new ClientApp process per message."""
    return NodeRound(states[u], PARAMS, n, u, Identity())


def _run(n: int, drop_before_masked: set[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    deltas = {u: rng.normal(0, 0.01, D).astype(np.float32) for u in range(n)}
    states = {u: RecordDict() for u in range(n)}
    server = SecAggServer(_context(n), invited=frozenset(range(n)))
    for u in range(n):
        encoded = encode_input(deltas[u], 1.0, np.array([1.0, 0.5]), PARAMS.quantization)
        server.accept(_fresh(states, u, n).advertise(ROUND, encoded, b"g" * 32, b"s" * 32, D, 2))
    directory = server.close_advertise_keys().to_bytes()
    for u in range(n):
        server.accept(_fresh(states, u, n).answer(ROUND, STAGE["share_keys"], directory))
    deliveries = server.close_share_keys()
    for u, delivery in deliveries.items():
        if u not in drop_before_masked:
            server.accept(
                _fresh(states, u, n).answer(ROUND, STAGE["masked_input"], delivery.to_bytes())
            )
    survivor_sets = server.close_masked_input()
    for u, survivors in survivor_sets.items():
        server.accept(
            _fresh(states, u, n).answer(ROUND, STAGE["consistency_check"], survivors.to_bytes())
        )
    requests = server.close_consistency_check()
    for u, request in requests.items():
        server.accept(_fresh(states, u, n).answer(ROUND, STAGE["unmasking"], request.to_bytes()))
    total = server.close_unmasking()
    survivors = [u for u in range(n) if u not in drop_before_masked]
    decoded = decode_sum(total, D, len(survivors), PARAMS.quantization)
    expected = sum(deltas[u].astype(np.float64) for u in survivors)
    return decoded.delta_sum, expected, survivors


@pytest.mark.parametrize("dropped", [set(), {1}])
def test_replayed_rounds_sum_within_quantization_error(dropped):
    got, expected, survivors = _run(4, dropped)
    bound = len(survivors) / PARAMS.quantization.delta_scale
    assert np.max(np.abs(got - expected)) <= bound


def test_a_stage_answered_twice_aborts_and_forgets_the_seed():
    states = {u: RecordDict() for u in range(3)}
    server = SecAggServer(_context(3), invited=frozenset(range(3)))
    encoded = encode_input(np.zeros(D, np.float32), 1.0, np.zeros(2), PARAMS.quantization)
    for u in range(3):
        server.accept(_fresh(states, u, 3).advertise(ROUND, encoded, b"g" * 32, b"s" * 32, D, 2))
    directory = server.close_advertise_keys().to_bytes()
    _fresh(states, 0, 3).answer(ROUND, STAGE["share_keys"], directory)
    with pytest.raises(ProtocolAbort):
        _fresh(states, 0, 3).answer(ROUND, STAGE["share_keys"], directory)
    assert "securefed.encoded" not in states[0].array_records
    assert "seed" not in states[0].config_records["securefed.round"]
    with pytest.raises(ProtocolAbort):
        _fresh(states, 1, 3).answer(ROUND + 1, STAGE["share_keys"], directory)


def test_a_round_is_started_once():
    """A second advertise for a round (fresh keys over the same update) is refused."""
    state = RecordDict()
    encoded = encode_input(np.zeros(D, np.float32), 1.0, np.zeros(2), PARAMS.quantization)
    _fresh({0: state}, 0, 3).advertise(ROUND, encoded, b"g" * 32, b"s" * 32, D, 2)
    for earlier_or_same in (ROUND, ROUND - 1):
        with pytest.raises(ProtocolAbort):
            _fresh({0: state}, 0, 3).check_new(earlier_or_same)
    _fresh({0: state}, 0, 3).check_new(ROUND + 1)


def test_keyed_entropy_repeats_per_seed_and_differs_across_seeds():
    a, b, c = keyed_entropy(b"x" * 32), keyed_entropy(b"x" * 32), keyed_entropy(b"y" * 32)
    first = [a(32), a(16)]
    assert first == [b(32), b(16)]
    assert c(32) != first[0]
    assert first[0][:16] != first[1]


# ---- the split-view attack against the node-side round ---------------------------------------
SPLIT_N, SPLIT_PARAMS = 10, SecAggParams(threshold=6)  # the lowest threshold n = 10 accepts


class _Node:
    """A SecAggClient-shaped front for one node: a fresh NodeRound for every message, as
    Flower starts a fresh ClientApp process for each."""

    def __init__(self, u: int, identity: Identity, encoded: np.ndarray, params) -> None:
        self.u, self.identity, self.encoded, self.params = u, identity, encoded, params
        self.record = RecordDict()
        self.stage = None

    def _round(self) -> NodeRound:
        return NodeRound(self.record, self.params, SPLIT_N, self.u, self.identity)

    def advertise_keys(self):
        return self._round().advertise(ROUND, self.encoded, *_HASHES, D, 2)

    def share_keys(self, directory):
        return self._round().answer(ROUND, STAGE["share_keys"], directory.to_bytes())

    def masked_input(self, delivery, encoded):
        return self._round().answer(ROUND, STAGE["masked_input"], delivery.to_bytes())

    def sign_survivors(self, survivors):
        return self._round().answer(ROUND, STAGE["consistency_check"], survivors.to_bytes())

    def unmask(self, request):
        return self._round().answer(ROUND, STAGE["unmasking"], request.to_bytes())


_HASHES = (b"global-adapter".ljust(32, b"."), b"vector-spec".ljust(32, b"."))


def _split_view_server():
    from secagg_harness import ManualRound, make_context, pinned_entropy
    from split_view_planner import SplitViewServer

    from securefed.secagg import crypto
    from securefed.secagg.roster import Roster

    ids = list(range(SPLIT_N))
    draw = pinned_entropy(b"flower split view")
    keys = {u: draw(32) for u in ids}
    roster = Roster({u: crypto.ed25519_public_key(k) for u, k in keys.items()})
    params = SecAggParams(threshold=6, roster=roster)
    context = make_context(SPLIT_N, dimension=D, extras_count=2, round_index=ROUND, params=params)
    manual = ManualRound(ids, context, roster=roster, identity_keys=keys)
    rng = np.random.default_rng(11)
    truth, encoded = {}, {}
    for u in ids:
        delta = rng.normal(0, 0.01, D).astype(np.float32)
        extras = np.array([1.0, rng.uniform(0, 5)])
        encoded[u] = encode_input(delta, 1.0, extras, params.quantization, rng)
        truth[u] = np.concatenate([delta.astype(np.float64), extras])
    manual.clients = {u: _Node(u, Identity(keys[u], roster), encoded[u], params) for u in ids}
    return SplitViewServer(manual, encoded), truth, params


@pytest.fixture
def planner_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "secagg"))


@pytest.mark.parametrize("check", ["off", "on"])
def test_split_view_attack_on_the_node_round(planner_on_path, monkeypatch, check):
    """The node-side round refuses the split-view attack; with the consistency check switched
    off (test only) the same planner recovers the victim's update from the nodes' shares."""
    from split_view_planner import choose_partners, plan_lists, plan_signed

    from securefed.secagg import consistency
    from securefed.secagg.params import minimum_partners
    from securefed.secagg.quantize import error_bound

    server, truth, params = _split_view_server()
    plan = server.state.plan
    t, victim = plan.threshold, 0
    partners = choose_partners(server.graph, victim, minimum_partners(plan, params.adversary))
    if check == "off":
        monkeypatch.setattr(consistency, "check_signatures", lambda *args: None)
        attack = plan_lists(server.graph, t, victim, partners)
        assert attack.complete
    else:
        attack = plan_signed(server.graph, t, victim, partners)
        assert not attack.complete
    server.deliver(victim, partners)
    outcome = server.run(attack)
    if check == "off":
        assert outcome.recovered is not None
        delta_bound, extras_bound = error_bound(1, params.quantization)
        error = np.abs(outcome.recovered - truth[victim])
        assert error[:D].max() <= delta_bound and error[D:].max() <= extras_bound
    else:
        assert outcome.recovered is None
        assert outcome.seed_shares < t or min(outcome.key_shares.values()) < t
        for u in outcome.refused:  # a refusing node holds no seed or input any more
            record = server.manual.clients[u].record
            assert "seed" not in record.config_records["securefed.round"]
            assert "securefed.encoded" not in record.array_records
