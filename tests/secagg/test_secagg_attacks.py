"""A server that tries to learn one client's update: what it can see is not enough, and the
attack that worked on Flower (a live client listed as both alive and dropped) works here
only when the client's strict checks are switched off -- so this test can fail."""

from __future__ import annotations

import numpy as np
import pytest
from secagg_harness import ManualRound, make_context

from securefed.errors import ProtocolAbort
from securefed.secagg import SecAggParams, crypto, shamir, unmasking
from securefed.secagg.client import ClientStage
from securefed.secagg.consistency import SurvivorSet
from securefed.secagg.masking import apply_masks
from securefed.secagg.quantize import decode_sum, encode_input, error_bound
from securefed.secagg.session import mask_sign, pair_mask_key, seed_commitment, self_mask_key
from securefed.secagg.state import PeerLedger
from securefed.secagg.unmasking import UnmaskRequest

IDS = [10, 20, 30, 40, 50, 60, 70]
TARGET = 40
DIMENSION = 64


def _inputs(context):
    rng = np.random.default_rng(7)
    params = context.params.quantization
    deltas = {u: rng.normal(size=DIMENSION).astype(np.float32) for u in IDS}
    encoded = {u: encode_input(deltas[u], 1.0, np.zeros(0), params, rng) for u in IDS}
    return deltas, encoded


def _started_round(params: SecAggParams):
    """A round that has reached the consistency check: every client sent its masked input."""
    context = make_context(len(IDS), dimension=DIMENSION, params=params)
    manual = ManualRound(IDS, context, seed=b"attack")
    deltas, encoded = _inputs(context)
    deliveries = manual.share(manual.advertise())
    survivor_sets = manual.mask(deliveries, encoded)
    return manual, deltas, survivor_sets


def _signed_requests(manual, views: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]):
    """Show each client its own (alive, dropped) view as the survivor set to sign, then
    forward to it every signature on that same set from its share holders -- the most a
    server holds. Clients that refuse to sign get no request."""
    sid = manual.server.session_id
    signed: dict[int, tuple[frozenset[int], bytes]] = {}
    for u, (alive, _) in views.items():
        try:
            msg = manual.clients[u].sign_survivors(SurvivorSet(sid, alive))
        except ProtocolAbort:
            continue
        signed[u] = (frozenset(alive), msg.signature)
    requests = {}
    for u in signed:
        alive, dropped = views[u]
        holders = manual.clients[u].state.neighbours | {u}
        signatures = tuple(
            (v, sig)
            for v, (view, sig) in sorted(signed.items())
            if v in holders and view == signed[u][0]
        )
        requests[u] = UnmaskRequest(sid, alive, dropped, signatures)
    return requests


def _shares_of(responses, owner: int, kind: str) -> dict[int, bytes]:
    out = {}
    for holder, response in responses.items():
        pairs = dict(getattr(response, kind))
        if owner in pairs:
            out[holder] = pairs[owner]
    return out


def recover_update(manual: ManualRound, responses, target: int) -> np.ndarray:
    """The attack: strip every mask the server can rebuild from what it holds off the
    target's own masked upload, and decode what is left."""
    state = manual.server.state
    sid, t = state.session_id, state.plan.threshold
    commitment = state.share_messages[target].seed_commitment
    mask_public = state.advertisements[target].mask_public
    seed = shamir.recover(
        _shares_of(responses, target, "self_seed_shares"),
        t,
        lambda s: seed_commitment(sid, target, s) == commitment,
    )
    mask_private = shamir.recover(
        _shares_of(responses, target, "mask_key_shares"),
        t,
        lambda s: crypto.x25519_public_key(s) == mask_public,
    )
    masks = []
    if seed is not None:
        masks.append((self_mask_key(sid, seed, target), -1))
    if mask_private is not None:
        mask_key = crypto.KeyAgreement(mask_private)
        for v in state.delivered[target]:
            key = pair_mask_key(sid, mask_key, state.advertisements[v].mask_public, target, v)
            masks.append((key, -mask_sign(target, v)))
    y = manual.masked[target].copy()
    apply_masks(y, masks)
    return decode_sum(y, DIMENSION, 1, manual.server.state.context.params.quantization).delta_sum


def _attack_error(manual, responses, deltas) -> float:
    estimate = recover_update(manual, responses, TARGET)
    truth = deltas[TARGET].astype(np.float64)
    params = manual.server.state.context.params
    truth *= min(1.0, params.clip_norm / np.linalg.norm(truth))
    return float(np.max(np.abs(estimate - truth)))


def _collect(manual, requests) -> dict:
    """Send each client its request; keep the responses of those that do not abort."""
    responses = {}
    for u, request in requests.items():
        try:
            responses[u] = manual.clients[u].unmask(request)
        except ProtocolAbort:
            assert manual.clients[u].stage is ClientStage.ABORTED
            assert not manual.clients[u].state.held  # secrets forgotten
    return responses


def test_everything_the_server_may_see_does_not_reveal_one_update() -> None:
    manual, deltas, survivor_sets = _started_round(SecAggParams())
    responses = _collect(manual, manual.sign(survivor_sets))
    assert set(responses) == set(IDS)
    for response in responses.values():
        manual.server.accept(response)
    manual.server.close_unmasking()  # the honest round succeeds
    bound = error_bound(1, manual.server.state.context.params.quantization)[0]
    assert _attack_error(manual, responses, deltas) > 1e4 * bound


def _double_listing(manual) -> dict[int, UnmaskRequest]:
    return _signed_requests(manual, dict.fromkeys(IDS, (tuple(IDS), (TARGET,))))


def test_double_listing_makes_every_client_abort_and_the_attack_fails() -> None:
    manual, deltas, _ = _started_round(SecAggParams())
    responses = _collect(manual, _double_listing(manual))
    assert responses == {}
    bound = error_bound(1, manual.server.state.context.params.quantization)[0]
    assert _attack_error(manual, responses, deltas) > 1e4 * bound


def test_same_attack_succeeds_when_the_strict_checks_are_bypassed(monkeypatch) -> None:
    monkeypatch.setattr(unmasking, "validate_unmask_request", lambda state, request: None)
    monkeypatch.setattr(PeerLedger, "mark", lambda self, peer, status: None)
    manual, deltas, _ = _started_round(SecAggParams())
    responses = _collect(manual, _double_listing(manual))
    assert set(responses) == set(IDS)
    bound = error_bound(1, manual.server.state.context.params.quantization)[0]
    assert _attack_error(manual, responses, deltas) <= bound


def test_live_client_listed_as_dropped_aborts_and_its_seed_stays_secret() -> None:
    """Told it dropped, the target refuses; the others release its mask-key shares but no
    one releases its self-mask seed, so its upload stays masked."""
    manual, deltas, _ = _started_round(SecAggParams())
    others = tuple(u for u in IDS if u != TARGET)
    responses = _collect(manual, _signed_requests(manual, dict.fromkeys(IDS, (others, (TARGET,)))))
    assert set(responses) == set(others)  # the target aborted
    assert manual.clients[TARGET].stage is ClientStage.ABORTED
    bound = error_bound(1, manual.server.state.context.params.quantization)[0]
    assert _attack_error(manual, responses, deltas) > 1e4 * bound


def _split_view(manual) -> dict[int, UnmaskRequest]:
    """Tell half the clients the target is alive and the other half that it dropped."""
    others = [u for u in IDS if u != TARGET]
    told_alive = {TARGET, *others[:3]}
    alive_view, dropped_view = (tuple(IDS), ()), (tuple(others), (TARGET,))
    return _signed_requests(
        manual, {u: alive_view if u in told_alive else dropped_view for u in IDS}
    )


@pytest.mark.parametrize(
    ("params", "leaks"),
    [
        (SecAggParams(), False),  # semi-malicious threshold: 2t > n + colluders
        (SecAggParams(adversary="curious", corrupt_fraction=0.0, threshold=3), True),
    ],
    ids=["semi-malicious-threshold", "curious-threshold-3"],
)
def test_split_view_is_defeated_by_the_threshold(params: SecAggParams, leaks: bool) -> None:
    """A two-way split: at a curious-server threshold two disjoint groups of t signers fit in
    one neighbourhood, so every client's checks pass and the update leaks; at the
    semi-malicious threshold (2t > k + 1 + c) neither group gathers t signatures and every client
    refuses at the consistency check."""
    manual, deltas, _ = _started_round(params)
    responses = _collect(manual, _split_view(manual))
    assert set(responses) == (set(IDS) if leaks else set())
    bound = error_bound(1, params.quantization)[0]
    assert (_attack_error(manual, responses, deltas) <= bound) == leaks
