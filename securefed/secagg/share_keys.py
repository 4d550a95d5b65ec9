"""Stage 1, share_keys: agree on the session, then send Shamir shares to every neighbour.

Server -> clients: ``KeyDirectory``, every advertisement it accepted (U1).
Client: checks the directory (this round; no repeated id; its own entry unchanged; every
signature valid when there is a roster; all keys distinct; at least t clients, at most the
cohort), computes the session id and the neighbour graph itself, draws its self-mask seed
b_u, and splits both b_u and its mask private key s_u t-of-(k+1) among its neighbours and
itself. Each neighbour's pair of shares is sealed with AES-256-GCM under a key derived from
X25519(c_u, c_v) for this session, sender and receiver only; the associated data is
session id || sender || receiver.
Client -> server: ``ShareKeys`` (the ciphertexts and a hash commitment to b_u). The senders
are U2; a client that stops before this is excluded and needs no recovery.

What the server learns: ciphertexts it cannot open, and commitments to random seeds.
"""

from __future__ import annotations

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import crypto, shamir
from securefed.secagg.advertise import verify_advertisement
from securefed.secagg.graph import neighbours, neighbours_of
from securefed.secagg.key_messages import AdvertiseKeys, KeyDirectory, ShareKeys
from securefed.secagg.session import (
    graph_seed,
    seed_commitment,
    session_id,
    share_associated_data,
    share_encryption_keys,
)
from securefed.secagg.state import ClientState, HeldShares, ServerState

COMMITMENT_BYTES = 32


def _abort(state: ClientState | ServerState, message: str) -> ProtocolAbort:
    return ProtocolAbort(message, round_index=state.context.round_index)


# -- client half ---------------------------------------------------------------------------


def _check_directory(state: ClientState, directory: KeyDirectory) -> dict[int, AdvertiseKeys]:
    round_index = state.context.round_index
    if directory.round_index != round_index:
        raise InvalidMessage(round_index=round_index)
    entries: dict[int, AdvertiseKeys] = {}
    for entry in directory.entries:
        if entry.client_id in entries:
            raise _abort(state, f"client {entry.client_id} appears twice in the key directory")
        verify_advertisement(entry, round_index, state.roster)
        entries[entry.client_id] = entry
    if entries.get(state.client_id) != state.advertised:
        raise InvalidMessage(round_index=round_index)  # our own keys were dropped or swapped
    keys = [k for e in entries.values() for k in (e.mask_public, e.encryption_public)]
    if len(set(keys)) != len(keys):
        raise InvalidMessage(round_index=round_index)  # a copied key would cancel a mask
    n, t = len(entries), state.plan.threshold
    if n > state.plan.cohort_size:
        raise _abort(state, f"{n} clients in the key directory, cohort is {state.plan.cohort_size}")
    if n < t:
        raise _abort(state, f"only {n} clients advertised keys, threshold is {t}")
    return entries


def share_keys(state: ClientState, directory: KeyDirectory) -> ShareKeys:
    """Check the directory, fix the session and graph, and seal shares for each neighbour."""
    entries = _check_directory(state, directory)
    sid = session_id(state.context, state.plan, entries.values())
    me = state.client_id
    near = neighbours_of(me, list(entries), state.plan.degree, graph_seed(sid))
    if len(near) + 1 < state.plan.threshold:
        raise _abort(state, f"client {me} has {len(near)} neighbours, too few for t")
    state.session_id, state.directory, state.neighbours = sid, entries, near
    state.self_seed = state.entropy(shamir.SECRET_BYTES)
    holders = [*state.neighbours, me]
    t = state.plan.threshold
    key_shares = shamir.split(state.mask_private, holders, t, state.entropy)
    seed_shares = shamir.split(state.self_seed, holders, t, state.entropy)
    state.held[me] = HeldShares(key_shares[me], seed_shares[me])
    ciphertexts = []
    for v in sorted(state.neighbours):
        send_key, state.receive_keys[v] = share_encryption_keys(
            sid, state.encryption_key, entries[v].encryption_public, me, v
        )
        plaintext = key_shares[v] + seed_shares[v]
        sealed = crypto.seal(send_key, plaintext, share_associated_data(sid, me, v))
        ciphertexts.append((v, sealed))
    state.encryption_key = None  # every key it was for is derived
    commitment = seed_commitment(sid, me, state.self_seed)
    return ShareKeys(me, sid, commitment, tuple(ciphertexts))


# -- server half ---------------------------------------------------------------------------


def open_share_keys(state: ServerState) -> KeyDirectory:
    """Close advertise_keys (U1), fix the session and graph, and publish the directory."""
    u1 = tuple(sorted(state.advertisements))
    state.participants["advertise_keys"] = u1
    if len(u1) < state.plan.threshold:
        raise _abort(
            state, f"{len(u1)} clients remained at advertise_keys, threshold {state.plan.threshold}"
        )
    entries = [state.advertisements[u] for u in u1]
    state.session_id = session_id(state.context, state.plan, entries)
    state.graph = neighbours(u1, state.plan.degree, graph_seed(state.session_id))
    return KeyDirectory(state.context.round_index, tuple(entries))


def accept_share_keys(state: ServerState, msg: ShareKeys) -> None:
    """Record one client's sealed shares; ``InvalidMessage`` unless they fit the session."""
    receivers = [v for v, _ in msg.ciphertexts]
    if (
        msg.sender not in state.graph
        or msg.sender in state.share_messages
        or msg.session_id != state.session_id
        or len(msg.seed_commitment) != COMMITMENT_BYTES
        or len(set(receivers)) != len(receivers)
        or set(receivers) != state.graph[msg.sender]
    ):
        raise InvalidMessage(round_index=state.context.round_index)
    state.share_messages[msg.sender] = msg
