"""Stage 0, advertise_keys: each client sends two fresh X25519 public keys, optionally signed.

Client: draws a mask key pair (s_u) and an encryption key pair (c_u) for this round only, and
signs (round, id, both public keys) with its pinned Ed25519 identity key when a roster is in
use. Server: keeps the first valid advertisement of each invited client; those clients are
U1. A client that sends nothing (a dropout before key advertisement) is simply not in the
round: nobody masks with it and nobody needs its shares.

What the server learns: who is online, and public keys.
"""

from __future__ import annotations

from securefed.errors import InvalidMessage
from securefed.secagg import crypto
from securefed.secagg.key_messages import AdvertiseKeys
from securefed.secagg.roster import Roster
from securefed.secagg.session import advertisement_statement
from securefed.secagg.state import ClientState, ServerState


def verify_advertisement(msg: AdvertiseKeys, round_index: int, roster: Roster | None) -> None:
    """Raise ``InvalidMessage`` unless ``msg`` is well formed, for this round, and signed by
    the roster key of its client (when there is a roster)."""
    if msg.round_index != round_index:
        raise InvalidMessage(round_index=round_index)
    if len(msg.mask_public) != crypto.KEY_BYTES or len(msg.encryption_public) != crypto.KEY_BYTES:
        raise InvalidMessage(round_index=round_index)
    if roster is None:
        return
    if msg.client_id not in roster or len(msg.signature) != crypto.SIGNATURE_BYTES:
        raise InvalidMessage(round_index=round_index)
    statement = advertisement_statement(
        round_index, msg.client_id, msg.mask_public, msg.encryption_public
    )
    try:
        crypto.verify_signature(roster.public_keys[msg.client_id], msg.signature, statement)
    except InvalidMessage:
        raise InvalidMessage(round_index=round_index) from None


# -- client half ---------------------------------------------------------------------------


def advertise_keys(state: ClientState) -> AdvertiseKeys:
    """Draw this round's two key pairs and advertise their public halves."""
    state.mask_private = state.entropy(crypto.KEY_BYTES)
    state.mask_key = crypto.KeyAgreement(state.mask_private)
    state.encryption_key = crypto.KeyAgreement(state.entropy(crypto.KEY_BYTES))
    mask_public, encryption_public = state.mask_key.public, state.encryption_key.public
    signature = b""
    if state.identity_key is not None:
        statement = advertisement_statement(
            state.context.round_index, state.client_id, mask_public, encryption_public
        )
        signature = crypto.sign(state.identity_key, statement)
    msg = AdvertiseKeys(
        state.client_id, state.context.round_index, mask_public, encryption_public, signature
    )
    state.advertised = msg
    return msg


# -- server half ---------------------------------------------------------------------------


def accept_advertisement(state: ServerState, msg: AdvertiseKeys) -> None:
    """Record one client's advertisement; ``InvalidMessage`` if it is bad or a repeat."""
    round_index = state.context.round_index
    verify_advertisement(msg, round_index, state.roster)
    if msg.client_id not in state.invited or msg.client_id in state.advertisements:
        raise InvalidMessage(round_index=round_index)
    state.advertisements[msg.client_id] = msg
