"""Seeds for the randomness that decides *what happens* in a run (never for keys or noise).

May import: the standard library only.
"""

from __future__ import annotations

import hashlib


def derived_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed for one purpose (round, client, ...), stable across runs and resumes."""
    text = "/".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1
