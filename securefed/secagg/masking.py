"""Adding and removing masks: AES-256-CTR keystreams as uint32, summed in place mod 2^32.

The vector is processed in chunks (256 KiB by default). For each chunk every mask's
keystream continues into one reused buffer, viewed with ``np.frombuffer`` (no copy), and is
added to or subtracted from the accumulator slice while both are hot in cache. Each mask
keeps one CTR context across chunks, so the result equals expanding each mask in one go
(``test_masking`` checks this against a naive per-pair reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from securefed.secagg.crypto import MaskStream

DEFAULT_CHUNK_WORDS = 1 << 16  # uint32 words per chunk: 256 KiB, sized to stay in L2


def apply_masks(
    acc: np.ndarray,
    masks: Sequence[tuple[bytes, int]],
    *,
    chunk_words: int = DEFAULT_CHUNK_WORDS,
) -> None:
    """In place: acc += sign * AES-CTR(key) for each (key, sign) in ``masks``, mod 2^32."""
    if acc.dtype != np.uint32 or acc.ndim != 1 or not acc.flags.c_contiguous:
        raise ValueError("the accumulator must be a contiguous 1-D uint32 array")
    if not masks:
        return
    streams = [(MaskStream(key), sign) for key, sign in masks]
    zeros = memoryview(bytes(4 * chunk_words))
    out = bytearray(4 * chunk_words + 15)
    keystream = np.frombuffer(out, dtype=np.uint32, count=chunk_words)  # view of ``out``
    n = acc.shape[0]
    for start in range(0, n, chunk_words):
        size = min(chunk_words, n - start)
        acc_chunk, mask_chunk, source = (
            acc[start : start + size],
            keystream[:size],
            zeros[: 4 * size],
        )
        for stream, sign in streams:
            stream.write_into(source, out)
            if sign > 0:
                np.add(acc_chunk, mask_chunk, out=acc_chunk)
            else:
                np.subtract(acc_chunk, mask_chunk, out=acc_chunk)
