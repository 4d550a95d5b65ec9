"""Session binding and every labelled key derivation of the protocol, in one place.

session_id = SHA-256 over: protocol version, round index, the round plan (graph, degree,
threshold, cohort size), every advertised entry in id order (id, mask public key,
encryption public key, identity signature), the global-adapter hash, the vector-spec hash,
the quantization parameters and the vector length.

It salts every HKDF call and opens every AEAD associated data, so a message from another
round, another key set, or a client that was sent a different model does not verify: the
round fails loudly instead of leaking. Labels (HKDF ``info``) are distinct per purpose and
carry the ids involved, so no key is ever used for two things.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Protocol

from securefed.secagg import crypto
from securefed.secagg.params import RoundContext, RoundPlan

PROTOCOL_VERSION = b"securefed/secagg/v1"
_PAIR_MASK = b"securefed/v1/mask/pair"
_SELF_MASK = b"securefed/v1/mask/self"
_SHARE_KEY = b"securefed/v1/share-encryption"
_SEED_COMMITMENT = b"securefed/v1/commit/self-mask-seed"
_ADVERTISE = b"securefed/v1/advertise"
_GRAPH = b"securefed/v1/graph"


class AdvertisedKeys(Protocol):
    client_id: int
    mask_public: bytes
    encryption_public: bytes
    signature: bytes


def _u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def _blob(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def session_id(context: RoundContext, plan: RoundPlan, entries: Iterable[AdvertisedKeys]) -> bytes:
    """The 32-byte id binding this round's keys, model, vector spec and parameters."""
    h = hashlib.sha256()
    h.update(_blob(PROTOCOL_VERSION))
    h.update(_u64(context.round_index))
    h.update(plan.to_bytes())
    ordered = sorted(entries, key=lambda e: e.client_id)
    h.update(_u64(len(ordered)))
    for e in ordered:
        h.update(_u64(e.client_id) + _blob(e.mask_public) + _blob(e.encryption_public))
        h.update(_blob(e.signature))
    h.update(_blob(context.global_adapter_hash))
    h.update(_blob(context.vector_spec_hash))
    h.update(context.params.quantization.to_bytes())
    h.update(_u64(context.dimension) + _u64(context.extras_count))
    return h.digest()


def advertisement_statement(
    round_index: int, client_id: int, mask_public: bytes, encryption_public: bytes
) -> bytes:
    """What an identity key signs: this client's public keys for this round."""
    return _ADVERTISE + _u64(round_index) + _u64(client_id) + mask_public + encryption_public


def graph_seed(sid: bytes) -> bytes:
    """Public seed of the Harary relabelling, fixed by the session id."""
    return hashlib.sha256(_GRAPH + sid).digest()


def pair_mask_key(
    sid: bytes, own_mask_key: crypto.KeyAgreement, peer_mask_public: bytes, u: int, v: int
) -> bytes:
    """AES key of the pairwise mask between clients u and v (symmetric in u, v)."""
    lo, hi = min(u, v), max(u, v)
    info = _PAIR_MASK + _u64(lo) + _u64(hi)
    return crypto.derive_key(own_mask_key.exchange(peer_mask_public), salt=sid, info=info)


def self_mask_key(sid: bytes, seed: bytes, client_id: int) -> bytes:
    """AES key of client ``client_id``'s self-mask, from its secret seed b_u."""
    return crypto.derive_key(seed, salt=sid, info=_SELF_MASK + _u64(client_id))


def share_encryption_keys(
    sid: bytes, own_key: crypto.KeyAgreement, peer_public: bytes, me: int, peer: int
) -> tuple[bytes, bytes]:
    """Single-use AEAD keys (me -> peer, peer -> me) for the one share message each way."""
    secret = own_key.exchange(peer_public)

    def key(sender: int, receiver: int) -> bytes:
        info = _SHARE_KEY + _u64(sender) + _u64(receiver)
        return crypto.derive_key(secret, salt=sid, info=info)

    return key(me, peer), key(peer, me)


def share_associated_data(sid: bytes, sender: int, receiver: int) -> bytes:
    """AEAD associated data of a share message: session id || sender || receiver."""
    return sid + _u64(sender) + _u64(receiver)


def seed_commitment(sid: bytes, client_id: int, seed: bytes) -> bytes:
    """Hash commitment to a self-mask seed, checked when the server reconstructs it."""
    return hashlib.sha256(_SEED_COMMITMENT + sid + _u64(client_id) + seed).digest()


def mask_sign(owner: int, peer: int) -> int:
    """+1 if ``owner`` adds the pair mask with ``peer``, -1 if it subtracts (canonical order)."""
    return 1 if owner < peer else -1
