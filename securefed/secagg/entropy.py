"""The randomness seam: every secret key, seed and share coefficient is drawn through here.

Protocol code takes an ``Entropy`` (a function n -> n random bytes) as an argument. The
default is the operating system's CSPRNG; tests pin a seeded stream to get reproducible
transcripts, and that stream warns loudly because its output is not secret.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable

Entropy = Callable[[int], bytes]

os_entropy: Entropy = os.urandom

OS_SOURCE = "os"
SEEDED_SOURCE = "seeded test stream"


class TestOnlyRandomnessWarning(UserWarning):
    """Keys were drawn from a seeded, reproducible stream: fine for tests, never for a run."""


def seeded_entropy(seed: bytes) -> Entropy:
    """A reproducible byte stream (SHAKE-256 of seed || counter). Tests only: it warns."""
    warnings.warn(
        "secure aggregation keys come from a seeded test stream, not the OS: not secret",
        TestOnlyRandomnessWarning,
        stacklevel=2,
    )
    counter = 0

    def draw(n: int) -> bytes:
        nonlocal counter
        counter += 1
        return hashlib.shake_256(seed + counter.to_bytes(8, "big")).digest(n)

    draw.source = SEEDED_SOURCE  # type: ignore[attr-defined]
    return draw


def entropy_source(entropy: Entropy) -> str:
    """What an audit records as the origin of the keys: ``"os"``, the seeded test stream, or
    the entropy's own ``source`` label; anything unlabelled is reported as ``"unlabelled"``
    (and flagged), never assumed to be the OS."""
    if entropy is os_entropy:
        return OS_SOURCE
    return str(getattr(entropy, "source", "unlabelled"))
