"""A misbehaving server: each attack ends in a client abort that releases nothing.

"Releases nothing" is checked on the client: the call raises instead of returning a
message, the client is ABORTED for good (a retry is refused), and its shares are forgotten.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest
from secagg_harness import ManualRound, make_context, pinned_entropy, random_inputs

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import SecAggParams, crypto
from securefed.secagg import share_keys as share_keys_stage
from securefed.secagg.advertise import AdvertiseKeys
from securefed.secagg.client import ClientStage
from securefed.secagg.consistency import SurvivorSet
from securefed.secagg.masked_input import ShareDelivery
from securefed.secagg.roster import Roster
from securefed.secagg.share_keys import KeyDirectory
from securefed.secagg.unmasking import UnmaskRequest

IDS = [10, 20, 30, 40, 50]  # default params: complete graph, t = 4


def _assert_aborted_without_leak(client, call, error=ProtocolAbort, match: str | None = None):
    with pytest.raises(error, match=match):
        call()
    assert client.stage is ClientStage.ABORTED
    assert not client.state.held and not client.state.mask_private
    with pytest.raises(ProtocolAbort, match="aborted"):
        client.unmask(UnmaskRequest(b"", (), ()))


def _at_unmasking():
    """A round where every client has signed the true survivor set; returns the honest
    unmask requests too."""
    context = make_context(len(IDS), dimension=16, params=SecAggParams())
    roster, keys = _identities()
    manual = ManualRound(IDS, context, roster=roster, identity_keys=keys)
    deliveries = manual.share(manual.advertise())
    requests = manual.sign(manual.mask(deliveries, random_inputs(IDS, context.vector_length)))
    return manual, manual.server.session_id, requests


ALL = tuple(IDS)
UNMASK_ATTACKS = {
    "overlapping-lists": (10, ALL, (30,), r"\[30\] are listed as both alive and dropped"),
    "repeated-alive-list": (10, (*ALL, 30), (), "alive list repeats"),
    "repeated-dropped-list": (10, ALL[:3], (40, 50, 50), "dropped list repeats"),
    "client-told-it-is-dropped": (10, ALL[1:], (10,), "itself listed as dropped"),
    "unknown-id": (10, (*ALL, 99), (), r"unknown clients \[99\]"),
    "neighbour-in-neither-list": (10, ALL[:4], (), "neighbour 50 is neither"),
    "too-few-live-neighbours": (10, ALL[:3], (40, 50), "3 live share holders, threshold 4"),
}


@pytest.mark.parametrize("attack", list(UNMASK_ATTACKS), ids=str)
def test_bad_unmask_request_aborts(attack: str) -> None:
    """The list checks stand on their own, behind the consistency check (switched off here
    so that each one is reached)."""
    receiver, alive, dropped, message = UNMASK_ATTACKS[attack]
    manual, sid, _ = _at_unmasking()
    client = manual.clients[receiver]
    client.state.check_consistency = False
    _assert_aborted_without_leak(
        client, lambda: client.unmask(UnmaskRequest(sid, alive, dropped)), match=message
    )


def test_a_client_answers_one_unmask_request_only() -> None:
    manual, sid, requests = _at_unmasking()
    manual.clients[10].unmask(requests[10])
    with pytest.raises(ProtocolAbort, match="unmasking after unmasking"):
        manual.clients[10].unmask(UnmaskRequest(sid, ALL[:4], (50,)))


def _identities():
    draw = pinned_entropy(b"identities")
    keys = {u: draw(32) for u in IDS}
    return Roster({u: crypto.ed25519_public_key(k) for u, k in keys.items()}), keys


def _at_consistency_check():
    context = make_context(len(IDS), dimension=16, params=SecAggParams())
    roster, keys = _identities()
    manual = ManualRound(IDS, context, roster=roster, identity_keys=keys)
    deliveries = manual.share(manual.advertise())
    manual.mask(deliveries, random_inputs(IDS, context.vector_length))
    return manual, manual.server.session_id


SURVIVOR_SET_ATTACKS = {
    "repeated-id": ((*ALL, 20), "repeats an id"),
    "unknown-id": ((*ALL, 99), r"unknown clients \[99\]"),
    "client-left-out": (ALL[1:], "leaves this client out"),
    "too-few-holders": (ALL[:3], "3 of its share holders survive, threshold 4"),
}


@pytest.mark.parametrize("attack", list(SURVIVOR_SET_ATTACKS), ids=str)
def test_bad_survivor_set_is_not_signed(attack: str) -> None:
    survivors, message = SURVIVOR_SET_ATTACKS[attack]
    manual, sid = _at_consistency_check()
    client = manual.clients[10]
    _assert_aborted_without_leak(
        client, lambda: client.sign_survivors(SurvivorSet(sid, survivors)), match=message
    )


def test_a_survivor_set_naming_a_neighbour_whose_shares_were_withheld_is_refused() -> None:
    context = make_context(len(IDS), dimension=16, params=SecAggParams())
    roster, keys = _identities()
    manual = ManualRound(IDS, context, roster=roster, identity_keys=keys)
    deliveries = manual.share(manual.advertise())
    withheld = dataclasses.replace(
        deliveries[10], ciphertexts=tuple(c for c in deliveries[10].ciphertexts if c[0] != 50)
    )
    inputs = random_inputs(IDS, context.vector_length)
    manual.clients[10].masked_input(withheld, inputs[10])
    client = manual.clients[10]
    sid = manual.server.session_id
    _assert_aborted_without_leak(
        client, lambda: client.sign_survivors(SurvivorSet(sid, ALL)), match=r"\[50\] never sent"
    )


def _forge(request, **changes):
    return dataclasses.replace(request, **changes)


SIGNATURE_ATTACKS = {
    # (change to the honest request of client 10, expected error, message)
    "alive-list-not-the-signed-set": (
        lambda r: _forge(r, alive=ALL[:4], dropped=(50,)),
        ProtocolAbort,
        "not the set it signed",
    ),
    "too-few-signatures": (
        lambda r: _forge(r, signatures=r.signatures[:3]),
        ProtocolAbort,
        "3 of its share holders signed the set, threshold 4",
    ),
    "forged-signature": (
        lambda r: _forge(r, signatures=((10, r.signatures[0][1][::-1]), *r.signatures[1:])),
        InvalidMessage,
        None,
    ),
    "signature-moved-to-another-signer": (
        lambda r: _forge(r, signatures=((10, r.signatures[1][1]), *r.signatures[1:])),
        InvalidMessage,
        None,
    ),
    "repeated-signer": (
        lambda r: _forge(r, signatures=(*r.signatures, r.signatures[0])),
        ProtocolAbort,
        "forwarded twice",
    ),
    "signer-outside-the-set": (
        lambda r: _forge(r, signatures=(*r.signatures[:3], (99, r.signatures[3][1]))),
        ProtocolAbort,
        r"signatures from \[99\]",
    ),
}


@pytest.mark.parametrize("attack", list(SIGNATURE_ATTACKS), ids=str)
def test_unmask_request_without_t_signatures_on_the_signed_set_aborts(attack: str) -> None:
    change, error, message = SIGNATURE_ATTACKS[attack]
    manual, _, requests = _at_unmasking()
    client = manual.clients[10]
    _assert_aborted_without_leak(
        client, lambda: client.unmask(change(requests[10])), error, message
    )


def test_signatures_on_a_different_set_do_not_count() -> None:
    """Four clients are shown a set without 50 and sign it; 10 signed the true set: their
    signatures do not verify for 10's set."""
    manual, sid = _at_consistency_check()
    others = {u: manual.clients[u].sign_survivors(SurvivorSet(sid, ALL[:4])) for u in ALL[1:4]}
    own = manual.clients[10].sign_survivors(SurvivorSet(sid, ALL))
    signatures = ((10, own.signature), *((u, m.signature) for u, m in others.items()))
    request = UnmaskRequest(sid, ALL, (), signatures)
    client = manual.clients[10]
    _assert_aborted_without_leak(client, lambda: client.unmask(request), InvalidMessage)


def _directory_round(params=None, round_index: int = 0, identities=True):
    default = SecAggParams() if identities else SecAggParams(adversary="curious")
    context = make_context(len(IDS), round_index=round_index, params=params or default)
    roster, keys = _identities() if identities else (None, None)
    manual = ManualRound(IDS, context, roster=roster, identity_keys=keys)
    return manual, manual.advertise()


def _replace(directory: KeyDirectory, client_id: int, entry: AdvertiseKeys) -> KeyDirectory:
    entries = tuple(entry if e.client_id == client_id else e for e in directory.entries)
    return dataclasses.replace(directory, entries=entries)


def _server_keys(entry: AdvertiseKeys) -> AdvertiseKeys:
    draw = pinned_entropy(b"server-owned")
    mask_pk, enc_pk = crypto.x25519_public_key(draw(32)), crypto.x25519_public_key(draw(32))
    return dataclasses.replace(entry, mask_public=mask_pk, encryption_public=enc_pk)


def test_swapped_peer_keys_are_refused_with_identities_on() -> None:
    manual, directory = _directory_round()
    victim = next(e for e in directory.entries if e.client_id == 20)
    forged = _replace(directory, 20, _server_keys(victim))
    client = manual.clients[10]
    _assert_aborted_without_leak(client, lambda: client.share_keys(forged), InvalidMessage)


def test_swapped_own_keys_are_refused_even_without_identities() -> None:
    manual, directory = _directory_round(identities=False)
    own = next(e for e in directory.entries if e.client_id == 10)
    forged = _replace(directory, 10, _server_keys(own))
    client = manual.clients[10]
    _assert_aborted_without_leak(client, lambda: client.share_keys(forged), InvalidMessage)


def test_invented_client_is_refused_with_identities_on() -> None:
    manual, directory = _directory_round()
    sybil = _server_keys(dataclasses.replace(directory.entries[0], client_id=99))
    forged = dataclasses.replace(directory, entries=(*directory.entries, sybil))
    client = manual.clients[30]
    _assert_aborted_without_leak(client, lambda: client.share_keys(forged), InvalidMessage)


def test_copied_key_and_repeated_entry_are_refused() -> None:
    manual, directory = _directory_round(identities=False)
    e10, e20 = directory.entries[0], directory.entries[1]
    copied = _replace(directory, 20, dataclasses.replace(e20, mask_public=e10.mask_public))
    _assert_aborted_without_leak(
        manual.clients[30], lambda: manual.clients[30].share_keys(copied), InvalidMessage
    )
    repeated = dataclasses.replace(directory, entries=(*directory.entries, e20))
    _assert_aborted_without_leak(
        manual.clients[40], lambda: manual.clients[40].share_keys(repeated), match="twice"
    )


def test_replayed_directory_from_another_round_is_invalid() -> None:
    _, old_directory = _directory_round(round_index=0)
    new, _ = _directory_round(round_index=1)
    client = new.clients[10]
    _assert_aborted_without_leak(client, lambda: client.share_keys(old_directory), InvalidMessage)


def test_replayed_signed_advertisement_is_invalid() -> None:
    _, old_directory = _directory_round(round_index=0)
    new, new_directory = _directory_round(round_index=1)
    replayed = dataclasses.replace(old_directory.entries[1], round_index=1)
    forged = _replace(new_directory, replayed.client_id, replayed)
    client = new.clients[30]
    _assert_aborted_without_leak(client, lambda: client.share_keys(forged), InvalidMessage)


def test_replayed_sealed_shares_are_invalid() -> None:
    old, old_directory = _directory_round(round_index=0)
    old_deliveries = old.share(old_directory)
    new, new_directory = _directory_round(round_index=1)
    new.share(new_directory)
    sid = new.server.session_id
    encoded = random_inputs(IDS, new.server.state.context.vector_length)
    replays = {
        20: old_deliveries[20],  # as sent in round 0
        40: ShareDelivery(40, sid, old_deliveries[40].ciphertexts),  # relabelled to round 1
    }
    for u, delivery in replays.items():
        client = new.clients[u]
        _assert_aborted_without_leak(
            client, lambda c=client, d=delivery, x=encoded[u]: c.masked_input(d, x), InvalidMessage
        )


def test_different_global_adapters_split_the_session_and_fail_loudly() -> None:
    params = SecAggParams()
    context = make_context(len(IDS), dimension=16, params=params)
    other = make_context(len(IDS), dimension=16, params=params, global_adapter_hash=b"x" * 32)
    manual = ManualRound(IDS, context, contexts={30: other})
    directory = manual.advertise()
    shares = {u: manual.clients[u].share_keys(directory) for u in IDS}
    # an honest server drops the client whose session differs ...
    with pytest.raises(InvalidMessage):
        manual.server.accept(shares[30])
    # ... a malicious one forwards everything: every receiver of its shares aborts
    for u in IDS:
        if u != 30:
            manual.server.accept(shares[u])
    sealed = {u: dict(shares[u].ciphertexts) for u in IDS}
    encoded = random_inputs(IDS, context.vector_length)
    for u in IDS:
        delivery = ShareDelivery(
            u, shares[u].session_id, tuple((v, sealed[v][u]) for v in IDS if v != u)
        )
        client = manual.clients[u]
        _assert_aborted_without_leak(
            client, lambda c=client, d=delivery, x=encoded[u]: c.masked_input(d, x), InvalidMessage
        )


@pytest.mark.parametrize("stage", ["share_keys", "masked_input", "unmask"])
def test_calls_out_of_order_are_refused(stage: str) -> None:
    context = make_context(len(IDS), params=SecAggParams())
    manual = ManualRound(IDS, context)
    client = manual.clients[10]
    calls = {
        "share_keys": lambda: client.share_keys(KeyDirectory(0, ())),
        "masked_input": lambda: client.masked_input(ShareDelivery(10, b"", ()), None),
        "unmask": lambda: client.unmask(UnmaskRequest(b"", (), ())),
    }
    with pytest.raises(ProtocolAbort, match="before any stage, only after"):
        calls[stage]()
    assert client.stage is ClientStage.NEW  # refusing an out-of-order call changes nothing


def test_a_different_plan_splits_the_session() -> None:
    """Clients compute the threshold themselves: one configured differently ends up in
    another session, so its shares are refused instead of weakening the round."""
    context = make_context(len(IDS), params=SecAggParams())  # t = 4
    other = make_context(len(IDS), params=SecAggParams(threshold=5))
    manual = ManualRound(IDS, context, contexts={30: other})
    directory = manual.advertise()
    assert manual.clients[30].state.plan.threshold == 5
    with pytest.raises(InvalidMessage):
        manual.server.accept(manual.clients[30].share_keys(directory))


def test_any_exception_in_a_handler_aborts_the_client_and_drops_its_secrets(monkeypatch) -> None:
    """Not only protocol errors: a struct.error (say, from a parser) used to leave a client
    ADVERTISED with its keys."""
    manual, directory = _directory_round()

    def broken(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 8 bytes")

    monkeypatch.setattr(share_keys_stage, "neighbours_of", broken)
    client = manual.clients[10]
    assert client.state.mask_private  # it holds its mask key before the call
    _assert_aborted_without_leak(client, lambda: client.share_keys(directory), struct.error)
    assert client.state.mask_key is None and client.state.encryption_key is None
