"""What each party remembers between protocol stages, and the per-peer ledger.

The stage modules (``advertise``, ``share_keys``, ``masked_input``, ``consistency``,
``unmasking``) read and
write these records; ``client.SecAggClient`` and ``server.SecAggServer`` own them and enforce
the stage order of ``stages.STAGE_TABLE``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from securefed.errors import ProtocolAbort
from securefed.secagg.crypto import KeyAgreement
from securefed.secagg.entropy import Entropy
from securefed.secagg.key_messages import AdvertiseKeys, ShareKeys
from securefed.secagg.params import RoundContext, RoundPlan
from securefed.secagg.roster import Roster


class PeerStatus(enum.Enum):
    ALIVE = "alive"  # in the sum: its self-mask seed share may be released
    DROPPED = "dropped"  # shared keys, then sent no input: its mask key share may be released


class PeerLedger:
    """Each peer is declared alive or dropped at most once per round, never both.

    This is the rule that stops a server from collecting both the self-mask seed share and
    the mask-key share of one client (which would unmask that client's input).
    """

    def __init__(self, round_index: int) -> None:
        self._round_index = round_index
        self._status: dict[int, PeerStatus] = {}

    def mark(self, peer: int, status: PeerStatus) -> None:
        if peer in self._status:
            raise ProtocolAbort(
                f"client {peer} was already declared {self._status[peer].value}",
                round_index=self._round_index,
            )
        self._status[peer] = status

    def status(self, peer: int) -> PeerStatus | None:
        return self._status.get(peer)


@dataclass(frozen=True)
class HeldShares:
    """A holder's shares of one owner's two secrets."""

    mask_key: bytes  # share of the owner's mask private key s_u^SK
    self_seed: bytes  # share of the owner's self-mask seed b_u


@dataclass
class ClientState:
    client_id: int
    context: RoundContext
    plan: RoundPlan
    entropy: Entropy
    identity_key: bytes | None = None
    roster: Roster | None = None
    # advertise_keys
    mask_private: bytes = b""  # s_u, kept as bytes to be secret-shared
    mask_key: KeyAgreement | None = None  # s_u, loaded for the pair-mask agreements
    encryption_key: KeyAgreement | None = None  # c_u
    advertised: AdvertiseKeys | None = None  # this client's own AdvertiseKeys, as sent
    # share_keys
    session_id: bytes = b""
    directory: dict[int, AdvertiseKeys] = field(default_factory=dict)  # U1: id -> AdvertiseKeys
    neighbours: frozenset[int] = frozenset()
    self_seed: bytes = b""
    receive_keys: dict[int, bytes] = field(default_factory=dict)  # AEAD key of v -> u shares
    # masked_input
    held: dict[int, HeldShares] = field(default_factory=dict)  # owner -> shares (self incl.)
    masked_with: frozenset[int] = frozenset()  # neighbours in U2: pair masks were added
    # consistency_check
    survivors: frozenset[int] | None = None  # the one survivor set this client signed
    # Tests only: False skips the consistency check at unmasking (the signatures and the
    # binding to the signed set), to show the split-view attack it stops. Never set in a run.
    check_consistency: bool = True
    # unmasking
    ledger: PeerLedger | None = None

    def forget_secrets(self) -> None:
        """Drop every secret (on abort or completion): nothing is left to coax out."""
        self.mask_private = self.self_seed = b""
        self.mask_key = self.encryption_key = None
        self.receive_keys.clear()
        self.held.clear()


@dataclass
class ServerState:
    context: RoundContext
    plan: RoundPlan
    roster: Roster | None = None
    invited: frozenset[int] = frozenset()
    advertisements: dict[int, AdvertiseKeys] = field(default_factory=dict)  # U1
    session_id: bytes = b""
    graph: dict[int, frozenset[int]] = field(default_factory=dict)
    share_messages: dict[int, ShareKeys] = field(default_factory=dict)  # U2: sender -> ShareKeys
    delivered: dict[int, frozenset[int]] = field(default_factory=dict)  # receiver -> senders
    total: np.ndarray | None = None  # running uint32 sum of masked inputs
    masked_senders: set[int] = field(default_factory=set)  # U3
    signatures: dict[int, bytes] = field(default_factory=dict)  # U4: signer -> signature
    responders: set[int] = field(default_factory=set)  # U5
    self_seed_shares: dict[int, dict[int, bytes]] = field(default_factory=dict)  # owner->holder
    mask_key_shares: dict[int, dict[int, bytes]] = field(default_factory=dict)
    participants: dict[str, tuple[int, ...]] = field(default_factory=dict)  # stage -> ids
