"""Stage 3, consistency_check: every survivor signs the one survivor set it was shown, and a
client releases shares only for a set that t of its own share holders signed.

This is the ConsistencyCheck round of Bonawitz et al. (CCS 2017, the malicious-server
variant), adapted to the sparse graph: the signatures a client needs come from its own
neighbourhood N[u] (its k neighbours and itself), the holders of the shares it would release.

Server -> each client in U3: ``SurvivorSet`` (U3, the clients whose masked input is in the sum).
Client (every violation aborts and releases nothing): the set is for this session, repeats no
id and names only clients of the directory; it contains the client itself; every neighbour in
it is one the client masked with; at least t of N[u] are in it. The client then signs
(session id, U3) with its Ed25519 identity key and remembers U3: it will never sign another.
Client -> server: ``SurvivorSignature``. The signers are U4; a survivor that does not sign is
still in the sum (its self-mask is removed from the shares of those who do).
Server -> each signer, in the ``UnmaskRequest``: the signatures of t signers in its N[u].
Client, before unmasking (``check_signatures``): the alive list is exactly the U3 it signed,
and at least t distinct members of its N[u] (itself included) signed that very set: it
verifies t forwarded signatures under the pinned roster (a bad one aborts).

Why it stops the split-view attack: a server that wants a partner v of a victim u unmasked
through v's mask key needs t holders of v's shares that signed a set without v; a v that
releases anything needs t holders of its shares that signed a set with v. Each honest client
signs one set, the c colluders in N[v] sign any, and 2t > k + 1 + c (``params``), so both
cannot happen in N[v]. With the masked-input rule (``params.minimum_partners``) too few
shares of u's seed are left outside u's honest partners, the colluders' included.

What a client can detect: a set that contradicts what it saw itself (a partner missing, a
non-partner present, itself absent) and fewer than t neighbours agreeing with it. What it
cannot: sets shown to clients outside its neighbourhood, or who really dropped. Without a
roster the signatures are empty and the stage only binds each client to the set it was shown;
that is why a run without a roster may only assume a curious server.

What the server learns: who is online, and signatures on a set it chose.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import crypto
from securefed.secagg.state import ClientState, ServerState
from securefed.secagg.wire import Reader, Writer

_SURVIVORS_TAG = 0x08
_SIGNATURE_TAG = 0x09
_STATEMENT = b"securefed/v1/consistency/survivors"


def survivor_statement(sid: bytes, survivors: tuple[int, ...]) -> bytes:
    """What a survivor signs: the session id and a SHA-256 of the sorted survivor set (so
    that each of the t verifications hashes 100 bytes, not 8 bytes per survivor)."""
    ids = sorted(survivors)
    digest = hashlib.sha256(struct.pack(f">I{len(ids)}Q", len(ids), *ids)).digest()
    return _STATEMENT + sid + digest


@dataclass(frozen=True)
class SurvivorSet:
    """Server -> each client in U3: the clients whose masked input is in the sum."""

    session_id: bytes
    survivors: tuple[int, ...]

    def to_bytes(self) -> bytes:
        return Writer(_SURVIVORS_TAG).blob(self.session_id).ids(self.survivors).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SurvivorSet:
        r = Reader(data, _SURVIVORS_TAG)
        msg = cls(r.blob(), r.ids())
        r.end()
        return msg


@dataclass(frozen=True)
class SurvivorSignature:
    """Client -> server: its identity signature on (session id, survivor set), or empty
    without a roster."""

    sender: int
    session_id: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        w = Writer(_SIGNATURE_TAG).u64(self.sender).blob(self.session_id)
        return w.blob(self.signature).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SurvivorSignature:
        r = Reader(data, _SIGNATURE_TAG)
        msg = cls(r.u64(), r.blob(), r.blob())
        r.end()
        return msg


def _abort(state: ClientState, message: str) -> ProtocolAbort:
    return ProtocolAbort(
        f"client {state.client_id} refuses the survivor set: {message}",
        round_index=state.context.round_index,
    )


# -- client half ---------------------------------------------------------------------------


def sign_survivors(state: ClientState, msg: SurvivorSet) -> SurvivorSignature:
    """Check the survivor set against what this client saw, remember it, and sign it."""
    me = state.client_id
    if msg.session_id != state.session_id:
        raise InvalidMessage(round_index=state.context.round_index)
    survivors = frozenset(msg.survivors)
    if len(survivors) != len(msg.survivors):
        raise _abort(state, "it repeats an id")
    unknown = sorted(survivors - set(state.directory))
    if unknown:
        raise _abort(state, f"it names unknown clients {unknown}")
    if me not in survivors:
        raise _abort(state, "it leaves this client out")
    strangers = sorted((survivors & state.neighbours) - state.masked_with)
    if strangers:
        raise _abort(state, f"neighbours {strangers} never sent it shares but are listed")
    holders = len(survivors & (state.neighbours | {me}))
    if holders < state.plan.threshold:
        raise _abort(
            state, f"{holders} of its share holders survive, threshold {state.plan.threshold}"
        )
    state.survivors = survivors
    signature = b""
    if state.identity_key is not None:
        statement = survivor_statement(state.session_id, msg.survivors)
        signature = crypto.sign(state.identity_key, statement)
    return SurvivorSignature(me, state.session_id, signature)


def check_signatures(
    state: ClientState, alive: tuple[int, ...], signatures: tuple[tuple[int, bytes], ...]
) -> None:
    """Raise unless ``alive`` is the set this client signed and t of its share holders
    signed that same set (t forwarded signatures verified against the pinned roster)."""
    me, t = state.client_id, state.plan.threshold
    if state.survivors is None or frozenset(alive) != state.survivors:
        raise _abort(state, "the unmask request's alive list is not the set it signed")
    holders = state.neighbours | {me}
    signers = [v for v, _ in signatures]
    if len(set(signers)) != len(signers):
        raise _abort(state, "a signer is forwarded twice")
    outsiders = sorted(set(signers) - (holders & state.survivors))
    if outsiders:
        raise _abort(state, f"signatures from {outsiders}, not surviving share holders")
    if len(signers) < t:
        raise _abort(state, f"{len(signers)} of its share holders signed the set, threshold {t}")
    if state.roster is None:
        if any(signature for _, signature in signatures):
            raise InvalidMessage(round_index=state.context.round_index)
        return
    # t valid signatures are what the rule needs; any invalid one before that aborts
    statement = survivor_statement(state.session_id, tuple(state.survivors))
    for v, signature in signatures[:t]:
        crypto.verify_signature(state.roster.public_keys[v], signature, statement)


# -- server half ---------------------------------------------------------------------------


def open_consistency_check(state: ServerState) -> dict[int, SurvivorSet]:
    """Close masked_input (U3) and show every survivor the survivor set."""
    u3 = tuple(sorted(state.masked_senders))
    state.participants["masked_input"] = u3
    t = state.plan.threshold
    if len(u3) < t:
        raise ProtocolAbort(
            f"{len(u3)} clients remained at masked_input, threshold {t}",
            round_index=state.context.round_index,
        )
    return dict.fromkeys(u3, SurvivorSet(state.session_id, u3))


def accept_survivor_signature(state: ServerState, msg: SurvivorSignature) -> None:
    """Record one survivor's signature; ``InvalidMessage`` unless it verifies."""
    round_index = state.context.round_index
    if (
        msg.sender not in state.masked_senders
        or msg.sender in state.signatures
        or msg.session_id != state.session_id
    ):
        raise InvalidMessage(round_index=round_index)
    if state.roster is None:  # a server without the roster cannot check; the clients do
        if len(msg.signature) not in (0, crypto.SIGNATURE_BYTES):
            raise InvalidMessage(round_index=round_index)
    else:
        statement = survivor_statement(state.session_id, tuple(state.masked_senders))
        crypto.verify_signature(state.roster.public_keys[msg.sender], msg.signature, statement)
    state.signatures[msg.sender] = msg.signature


def forwarded_signatures(state: ServerState, receiver: int) -> tuple[tuple[int, bytes], ...]:
    """The signatures a receiver needs: t of those of the signers among its share holders
    (the server verified them all; the receiver verifies the t it gets)."""
    holders = state.graph[receiver] | {receiver}
    signers = sorted(holders & set(state.signatures))[: state.plan.threshold]
    return tuple((v, state.signatures[v]) for v in signers)
