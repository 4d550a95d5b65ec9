"""Stage 4, unmasking: survivors release exactly one kind of share per peer; the server
removes the masks and is left with the sum.

Server -> each client in U4 (the signers of ``consistency``): ``UnmaskRequest`` with the alive
list (U3), the dropped list (U2 minus U3) and the survivor-set signatures of the signers
among the client's share holders.
Client (strict; every violation aborts and releases nothing): the request is for this
session; the alive list is the survivor set it signed, and t of its share holders signed
that set (``consistency.check_signatures``); neither list repeats an id or names an id
outside the directory; the lists are disjoint; the client itself is alive; every neighbour it
masked with is in exactly one list and no other neighbour is in either; at least t of its
share holders are alive. Each
neighbour is then entered once in a ``PeerLedger`` as alive or dropped, and the client
releases its share of b_v for alive v (itself included) and its share of s_v for dropped v
-- never both for one peer, so the server never holds both secrets of a live client.
Client -> server: ``UnmaskResponse``. The responders are U5.
Server: needs t shares per secret; reconstructs each b_u (u in U3) and checks it against the
commitment, reconstructs each s_v (v dropped) and checks it against the advertised mask
public key (trying other t-subsets if a share is bad), then subtracts PRG(b_u) and the
pair masks between dropped and surviving clients. What remains is sum over U3 of x_u.

What the server learns: the sum over U3 (at least t clients), b_u of survivors and s_v of
dropped clients -- neither reveals an individual input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import consistency, crypto, shamir
from securefed.secagg.masking import apply_masks
from securefed.secagg.session import mask_sign, pair_mask_key, seed_commitment, self_mask_key
from securefed.secagg.state import ClientState, PeerLedger, PeerStatus, ServerState
from securefed.secagg.wire import Reader, Writer

_REQUEST_TAG = 0x06
_RESPONSE_TAG = 0x07


@dataclass(frozen=True)
class UnmaskRequest:
    """Server -> each signer: who is in the sum, who dropped after sharing keys, and the
    survivor-set signatures of the signers among the receiver's share holders."""

    session_id: bytes
    alive: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...] = ()  # (signer, signature)

    def to_bytes(self) -> bytes:
        w = Writer(_REQUEST_TAG).blob(self.session_id)
        return w.ids(self.alive).ids(self.dropped).id_blobs(self.signatures).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UnmaskRequest:
        r = Reader(data, _REQUEST_TAG)
        msg = cls(r.blob(), r.ids(), r.ids(), r.id_blobs())
        r.end()
        return msg


@dataclass(frozen=True)
class UnmaskResponse:
    """Client -> server: self-mask seed shares of alive peers, mask-key shares of dropped."""

    sender: int
    session_id: bytes
    self_seed_shares: tuple[tuple[int, bytes], ...]  # (owner, share)
    mask_key_shares: tuple[tuple[int, bytes], ...]

    def to_bytes(self) -> bytes:
        w = Writer(_RESPONSE_TAG).u64(self.sender).blob(self.session_id)
        return w.id_blobs(self.self_seed_shares).id_blobs(self.mask_key_shares).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UnmaskResponse:
        r = Reader(data, _RESPONSE_TAG)
        msg = cls(r.u64(), r.blob(), r.id_blobs(), r.id_blobs())
        r.end()
        return msg


# -- client half ---------------------------------------------------------------------------


def validate_unmask_request(state: ClientState, request: UnmaskRequest) -> None:
    """Raise unless the request is one an honest server could send this client."""
    me, round_index = state.client_id, state.context.round_index

    def abort(message: str) -> ProtocolAbort:
        return ProtocolAbort(f"client {me} refuses to unmask: {message}", round_index=round_index)

    if request.session_id != state.session_id:
        raise InvalidMessage(round_index=round_index)
    if state.check_consistency:
        consistency.check_signatures(state, request.alive, request.signatures)
    for name, ids in (("alive", request.alive), ("dropped", request.dropped)):
        if len(set(ids)) != len(ids):
            raise abort(f"the {name} list repeats an id")
        unknown = sorted(set(ids) - set(state.directory))
        if unknown:
            raise abort(f"the {name} list names unknown clients {unknown}")
    alive, dropped = set(request.alive), set(request.dropped)
    if me in dropped or me not in alive:
        raise abort("it is itself listed as dropped or not alive")
    both = sorted(alive & dropped)
    if both:
        raise abort(f"clients {both} are listed as both alive and dropped")
    for v in state.neighbours:
        listed = (v in alive) + (v in dropped)
        if v in state.masked_with and listed != 1:
            raise abort(f"neighbour {v} is neither alive nor dropped")
        if v not in state.masked_with and listed:
            raise abort(f"neighbour {v} never sent it shares but is listed")
    live_holders = len(alive & (state.neighbours | {me}))
    if live_holders < state.plan.threshold:
        raise abort(f"{live_holders} live share holders, threshold {state.plan.threshold}")


def unmask(state: ClientState, request: UnmaskRequest) -> UnmaskResponse:
    """Validate the lists, record each peer once, and release one share kind per peer."""
    validate_unmask_request(state, request)
    ledger = state.ledger = PeerLedger(state.context.round_index)
    alive_holders = sorted(set(request.alive) & (state.masked_with | {state.client_id}))
    dropped_peers = sorted(set(request.dropped) & state.masked_with)
    for v in alive_holders:
        ledger.mark(v, PeerStatus.ALIVE)
    for v in dropped_peers:
        ledger.mark(v, PeerStatus.DROPPED)
    seed_shares = tuple((v, state.held[v].self_seed) for v in alive_holders)
    key_shares = tuple((v, state.held[v].mask_key) for v in dropped_peers)
    return UnmaskResponse(state.client_id, state.session_id, seed_shares, key_shares)


# -- server half ---------------------------------------------------------------------------


def _abort(state: ServerState, message: str) -> ProtocolAbort:
    return ProtocolAbort(message, round_index=state.context.round_index)


def open_unmasking(state: ServerState) -> dict[int, UnmaskRequest]:
    """Close consistency_check (U4) and ask every signer for its shares."""
    u4 = tuple(sorted(state.signatures))
    state.participants["consistency_check"] = u4
    t = state.plan.threshold
    if len(u4) < t:
        raise _abort(state, f"{len(u4)} clients remained at consistency_check, threshold {t}")
    u3 = tuple(sorted(state.masked_senders))
    dropped = tuple(sorted(set(state.share_messages) - set(u3)))
    return {
        u: UnmaskRequest(state.session_id, u3, dropped, consistency.forwarded_signatures(state, u))
        for u in u4
    }


def _store(
    table: dict[int, dict[int, bytes]], holder: int, pairs: Iterable[tuple[int, bytes]]
) -> None:
    for owner, share in pairs:
        table.setdefault(owner, {})[holder] = share


def accept_unmask_response(state: ServerState, msg: UnmaskResponse) -> None:
    """Record one survivor's shares; ``InvalidMessage`` unless each is one it may hold."""
    sender = msg.sender
    alive = state.masked_senders
    seed_owners = [o for o, _ in msg.self_seed_shares]
    key_owners = [o for o, _ in msg.mask_key_shares]
    holds = state.delivered.get(sender, frozenset()) | {sender}
    shares = [s for _, s in (*msg.self_seed_shares, *msg.mask_key_shares)]
    if (
        sender not in state.signatures
        or sender in state.responders
        or msg.session_id != state.session_id
        or len(set(seed_owners + key_owners)) != len(seed_owners) + len(key_owners)
        or any(o not in alive or o not in holds for o in seed_owners)
        or any(o in alive or o not in holds for o in key_owners)
        or any(len(s) != shamir.SHARE_BYTES for s in shares)
    ):
        raise InvalidMessage(round_index=state.context.round_index)
    _store(state.self_seed_shares, sender, msg.self_seed_shares)
    _store(state.mask_key_shares, sender, msg.mask_key_shares)
    state.responders.add(sender)


def _recover(state: ServerState, what: str, owner: int, shares: dict[int, bytes], check) -> bytes:
    t = state.plan.threshold
    if len(shares) < t:
        raise _abort(state, f"{len(shares)} shares of client {owner}'s {what}, threshold {t}")
    secret = shamir.recover(shares, t, check)
    if secret is None:
        raise _abort(state, f"no {t} shares of client {owner}'s {what} match its commitment")
    return secret


def finish_unmasking(state: ServerState) -> np.ndarray:
    """Close unmasking (U5), reconstruct the secrets and return the unmasked uint32 sum."""
    u5 = tuple(sorted(state.responders))
    state.participants["unmasking"] = u5
    t, sid = state.plan.threshold, state.session_id
    if len(u5) < t:
        raise _abort(state, f"{len(u5)} clients remained at unmasking, threshold {t}")
    if state.total is None:
        raise _abort(state, "no masked input was collected")
    masks: list[tuple[bytes, int]] = []
    for u in sorted(state.masked_senders):
        commitment = state.share_messages[u].seed_commitment
        seed = _recover(
            state,
            "self-mask seed",
            u,
            state.self_seed_shares.get(u, {}),
            lambda s, u=u, c=commitment: seed_commitment(sid, u, s) == c,
        )
        masks.append((self_mask_key(sid, seed, u), -1))
    for v in sorted(set(state.share_messages) - state.masked_senders):
        partners = sorted(u for u in state.masked_senders if v in state.delivered[u])
        if not partners:
            continue  # no survivor masked with v: nothing to remove
        advertised = state.advertisements[v].mask_public
        mask_private = _recover(
            state,
            "mask key",
            v,
            state.mask_key_shares.get(v, {}),
            lambda s, pk=advertised: crypto.x25519_public_key(s) == pk,
        )
        mask_key = crypto.KeyAgreement(mask_private)
        for u in partners:
            key = pair_mask_key(sid, mask_key, state.advertisements[u].mask_public, v, u)
            masks.append((key, -mask_sign(u, v)))
    apply_masks(state.total, masks)
    return state.total
