"""The messages of the two key stages, which each party's state (``state``) records.

``AdvertiseKeys`` (client -> server, stage 0, ``advertise``), ``KeyDirectory`` (server ->
clients) and ``ShareKeys`` (client -> server, stage 1, ``share_keys``). Their stage modules
build and check them; they sit below ``state`` because ``ClientState`` and ``ServerState``
keep them for the later stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from securefed.errors import InvalidMessage
from securefed.secagg.wire import Reader, Writer

_ADVERTISE_TAG = 0x01
_DIRECTORY_TAG = 0x02
_SHARES_TAG = 0x03


@dataclass(frozen=True)
class AdvertiseKeys:
    """Client -> server: this round's public keys."""

    client_id: int
    round_index: int
    mask_public: bytes
    encryption_public: bytes
    signature: bytes = b""  # Ed25519 over advertisement_statement(...), or empty

    @property
    def sender(self) -> int:
        """The client it comes from (every client message names its sender)."""
        return self.client_id

    def to_bytes(self) -> bytes:
        w = Writer(_ADVERTISE_TAG).u64(self.client_id).u64(self.round_index)
        return w.blob(self.mask_public).blob(self.encryption_public).blob(self.signature).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AdvertiseKeys:
        r = Reader(data, _ADVERTISE_TAG)
        msg = cls(r.u64(), r.u64(), r.blob(), r.blob(), r.blob())
        r.end()
        return msg


@dataclass(frozen=True)
class KeyDirectory:
    """Server -> every client in U1: all accepted advertisements."""

    round_index: int
    entries: tuple[AdvertiseKeys, ...]

    def to_bytes(self) -> bytes:
        w = Writer(_DIRECTORY_TAG).u64(self.round_index)
        return w.id_blobs((e.client_id, e.to_bytes()) for e in self.entries).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyDirectory:
        r = Reader(data, _DIRECTORY_TAG)
        round_index = r.u64()
        entries = []
        for client_id, blob in r.id_blobs():
            entry = AdvertiseKeys.from_bytes(blob)
            if entry.client_id != client_id:
                raise InvalidMessage()
            entries.append(entry)
        r.end()
        return cls(round_index, tuple(entries))


@dataclass(frozen=True)
class ShareKeys:
    """Client -> server: sealed shares for each neighbour, and the commitment to b_u."""

    sender: int
    session_id: bytes
    seed_commitment: bytes
    ciphertexts: tuple[tuple[int, bytes], ...]  # (receiver, sealed shares), by receiver

    def to_bytes(self) -> bytes:
        w = Writer(_SHARES_TAG).u64(self.sender).blob(self.session_id).blob(self.seed_commitment)
        return w.id_blobs(self.ciphertexts).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareKeys:
        r = Reader(data, _SHARES_TAG)
        msg = cls(r.u64(), r.blob(), r.blob(), r.id_blobs())
        r.end()
        return msg
