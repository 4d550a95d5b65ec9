"""Stage 2, masked_input: each client uploads its encoded input under pairwise and self masks.

Server -> each client u in U2: ``ShareDelivery``, the sealed shares its neighbours in U2 sent.
Client: opens every ciphertext (session id, sender and receiver in the associated data; any
failure is ``InvalidMessage``), keeps the shares, and treats exactly those senders as its
live neighbours (its partners P). It aborts unless |P| >= ``params.minimum_partners``:
t - 1 (so, with itself, t holders can remove its masks), and against a semi-malicious
server with c colluders also k + 2 + c - t, so that fewer than t shares of its self-mask
seed lie outside its honest partners, the colluders' included -- the counting argument in
``minimum_partners`` shows a server then cannot collect t shares of that seed at the
consistency check (a server that delivers the victim only a few
partners' shares is the split-view attack of ``consistency``). It uploads, mod 2^32,

    y_u = x_u + PRG(b_u) + sum over live neighbours v of sign(u, v) * PRG(s_uv),

with sign +1 if u < v and -1 otherwise, PRG = AES-256-CTR, and s_uv = HKDF(X25519(s_u, s_v),
salt = session id, info = label || min(u, v) || max(u, v)). The mask secrets are then
forgotten; only the held shares remain.
Client -> server: ``MaskedInput`` (4 bytes per coordinate). The senders are U3; the server
keeps only the running sum, never the individual vectors.

What the server learns: vectors that are uniformly random on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import crypto, shamir
from securefed.secagg.masking import apply_masks
from securefed.secagg.params import minimum_partners
from securefed.secagg.session import (
    mask_sign,
    pair_mask_key,
    self_mask_key,
    share_associated_data,
)
from securefed.secagg.state import ClientState, HeldShares, ServerState
from securefed.secagg.wire import Reader, Writer

_DELIVERY_TAG = 0x04
_MASKED_TAG = 0x05
_VECTOR_DTYPE = np.dtype("<u4")  # little-endian uint32 on the wire


@dataclass(frozen=True)
class ShareDelivery:
    """Server -> one client: the sealed shares addressed to it, by sender."""

    receiver: int
    session_id: bytes
    ciphertexts: tuple[tuple[int, bytes], ...]

    def to_bytes(self) -> bytes:
        w = Writer(_DELIVERY_TAG).u64(self.receiver).blob(self.session_id)
        return w.id_blobs(self.ciphertexts).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareDelivery:
        r = Reader(data, _DELIVERY_TAG)
        msg = cls(r.u64(), r.blob(), r.id_blobs())
        r.end()
        return msg


@dataclass(frozen=True, eq=False)
class MaskedInput:
    """Client -> server: the masked, encoded input (uint32)."""

    sender: int
    session_id: bytes
    vector: np.ndarray  # uint32 (vector_length,)

    def to_bytes(self) -> bytes:
        body = np.ascontiguousarray(self.vector, dtype=_VECTOR_DTYPE).tobytes()
        return Writer(_MASKED_TAG).u64(self.sender).blob(self.session_id).blob(body).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskedInput:
        r = Reader(data, _MASKED_TAG)
        sender, sid, body = r.u64(), r.blob(), r.blob_view()
        r.end()
        if len(body) % 4:
            raise InvalidMessage()
        return cls(sender, sid, np.frombuffer(body, dtype=_VECTOR_DTYPE))


# -- client half ---------------------------------------------------------------------------


def _open_shares(state: ClientState, delivery: ShareDelivery) -> dict[int, HeldShares]:
    me, sid, round_index = state.client_id, state.session_id, state.context.round_index
    if delivery.session_id != sid or delivery.receiver != me:
        raise InvalidMessage(round_index=round_index)
    opened: dict[int, HeldShares] = {}
    for sender, ciphertext in delivery.ciphertexts:
        if sender in opened:
            raise ProtocolAbort(
                f"shares from client {sender} delivered twice", round_index=round_index
            )
        if sender not in state.neighbours:
            raise ProtocolAbort(
                f"shares from client {sender}, not a neighbour", round_index=round_index
            )
        key = state.receive_keys[sender]
        plaintext = crypto.open_sealed(key, ciphertext, share_associated_data(sid, sender, me))
        if len(plaintext) != 2 * shamir.SHARE_BYTES:
            raise InvalidMessage(round_index=round_index)
        opened[sender] = HeldShares(
            plaintext[: shamir.SHARE_BYTES], plaintext[shamir.SHARE_BYTES :]
        )
    needed = minimum_partners(state.plan, state.context.params.adversary)
    if len(opened) < needed:
        raise ProtocolAbort(
            f"client {me} has {len(opened)} live neighbours, fewer than the {needed} it needs "
            f"(t = {state.plan.threshold}, k = {state.plan.degree})",
            round_index=round_index,
        )
    return opened


def masked_input(state: ClientState, delivery: ShareDelivery, encoded: np.ndarray) -> MaskedInput:
    """Keep the delivered shares and upload ``encoded`` (uint32) under all masks."""
    if encoded.dtype != np.uint32 or encoded.shape != (state.context.vector_length,):
        raise ValueError(f"encoded input must be uint32 of length {state.context.vector_length}")
    opened = _open_shares(state, delivery)
    state.held.update(opened)
    state.masked_with = frozenset(opened)
    me, sid = state.client_id, state.session_id
    masks = [(self_mask_key(sid, state.self_seed, me), 1)]
    for v in sorted(state.masked_with):
        key = pair_mask_key(sid, state.mask_key, state.directory[v].mask_public, me, v)
        masks.append((key, mask_sign(me, v)))
    vector = encoded.copy()
    apply_masks(vector, masks)
    state.mask_private = state.self_seed = b""
    state.mask_key = None
    state.receive_keys.clear()
    return MaskedInput(me, sid, vector)


# -- server half ---------------------------------------------------------------------------


def open_masked_input(state: ServerState) -> dict[int, ShareDelivery]:
    """Close share_keys (U2) and route each client the shares its live neighbours sent it."""
    u2 = tuple(sorted(state.share_messages))
    state.participants["share_keys"] = u2
    t = state.plan.threshold
    if len(u2) < t:
        raise ProtocolAbort(
            f"{len(u2)} clients remained at share_keys, threshold {t}",
            round_index=state.context.round_index,
        )
    sealed = {u: dict(state.share_messages[u].ciphertexts) for u in u2}
    deliveries = {}
    for u in u2:
        senders = sorted(v for v in state.graph[u] if v in sealed)
        state.delivered[u] = frozenset(senders)
        deliveries[u] = ShareDelivery(
            u, state.session_id, tuple((v, sealed[v][u]) for v in senders)
        )
    state.total = np.zeros(state.context.vector_length, dtype=np.uint32)
    return deliveries


def accept_masked_input(state: ServerState, msg: MaskedInput) -> None:
    """Add one masked input to the running sum; ``InvalidMessage`` unless it fits the session."""
    if (
        state.total is None
        or msg.sender not in state.delivered
        or msg.sender in state.masked_senders
        or msg.session_id != state.session_id
        or msg.vector.shape != state.total.shape
    ):
        raise InvalidMessage(round_index=state.context.round_index)
    np.add(state.total, msg.vector, out=state.total)  # uint32: wraps mod 2^32
    state.masked_senders.add(msg.sender)
