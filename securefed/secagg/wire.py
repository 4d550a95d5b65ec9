"""Byte encoding shared by the protocol messages: a tag byte, then fixed-width fields.

Integers are big-endian u64; byte strings and lists carry a u32 length. A message that does
not parse, has trailing bytes or the wrong tag is an ``InvalidMessage`` -- the same opaque
error as a failed tag or signature, so a transport never needs to special-case parsing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from securefed.errors import InvalidMessage


class Writer:
    """Append-only encoder; ``getvalue()`` gives the bytes."""

    def __init__(self, tag: int) -> None:
        self._parts: list[bytes] = [bytes([tag])]

    def u64(self, value: int) -> Writer:
        self._parts.append(struct.pack(">Q", value))
        return self

    def blob(self, value: bytes) -> Writer:
        self._parts.append(struct.pack(">I", len(value)))
        self._parts.append(bytes(value))
        return self

    def ids(self, values: Iterable[int]) -> Writer:
        values = list(values)
        self._parts.append(struct.pack(">I", len(values)))
        self._parts.extend(struct.pack(">Q", v) for v in values)
        return self

    def id_blobs(self, pairs: Iterable[tuple[int, bytes]]) -> Writer:
        pairs = list(pairs)
        self._parts.append(struct.pack(">I", len(pairs)))
        for key, value in pairs:
            self.u64(key).blob(value)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Decoder over one message; every read past the end raises ``InvalidMessage``."""

    def __init__(self, data: bytes, tag: int) -> None:
        self._view = memoryview(data)
        self._pos = 1
        if len(data) < 1 or data[0] != tag:
            raise InvalidMessage()

    def _take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._view):
            raise InvalidMessage()
        out = self._view[self._pos : self._pos + n]
        self._pos += n
        return out

    def u64(self) -> int:
        return struct.unpack(">Q", self._take(8))[0]

    def _count(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def blob(self) -> bytes:
        return bytes(self._take(self._count()))

    def blob_view(self) -> memoryview:
        """A zero-copy view of the next length-prefixed field (for large vectors)."""
        return self._take(self._count())

    def ids(self) -> tuple[int, ...]:
        n = self._count()
        return tuple(struct.unpack(f">{n}Q", self._take(8 * n))) if n else ()

    def id_blobs(self) -> tuple[tuple[int, bytes], ...]:
        return tuple((self.u64(), self.blob()) for _ in range(self._count()))

    def end(self) -> None:
        if self._pos != len(self._view):
            raise InvalidMessage()
