"""Shamir t-of-k secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).

A secret s is the constant term of a random polynomial f of degree t - 1; holder ``h`` (a
client id) gets f(h + 1). Any t shares give s by Lagrange interpolation at 0; t - 1 shares
are independent of s. The Mersenne prime 2^521 - 1 holds a whole 32-byte secret in one field
element, so a share is one 66-byte number and no chunking or padding is needed.

Hand-written (about 60 lines) because no maintained Python library shares over a prime
field with caller-supplied randomness; pycryptodome's Shamir works in GF(2^128) in 16-byte
chunks and draws its own coefficients. Reconstruction is verified by the caller against a
commitment (hash of the self-mask seed, or the advertised mask public key): ``recover``
tries further t-subsets when a share is bad, so one lying holder cannot corrupt the sum.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

from securefed.secagg.entropy import Entropy

PRIME = 2**521 - 1
SHARE_BYTES = 66  # ceil(521 / 8)
SECRET_BYTES = 32
# Extra random bytes beyond the field size make reducing a uniform integer mod p unbiased
# to 2^-128.
_COEFFICIENT_BYTES = SHARE_BYTES + 16
MAX_RECOVERY_ATTEMPTS = 64
MAX_HOLDER = 2**64 - 1  # holders are client ids, u64 on the wire


def _check_holders(holders: list[int]) -> None:
    """Raise ``ValueError`` unless every holder is an int in [0, 2^64) and none repeats
    (x = holder + 1 must be a distinct non-zero field element)."""
    bad = [
        h
        for h in holders
        if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h <= MAX_HOLDER
    ]
    if bad:
        raise ValueError(f"share holders must be integers in [0, 2^64); got {bad[:5]}")
    if len(set(holders)) != len(holders):
        raise ValueError("share holders repeat")


def split(
    secret: bytes, holders: Iterable[int], threshold: int, entropy: Entropy
) -> dict[int, bytes]:
    """Share ``secret`` (32 bytes) among ``holders`` so that any ``threshold`` recover it."""
    holder_list = list(holders)
    _check_holders(holder_list)
    holder_list.sort()
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secrets are {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(holder_list):
        raise ValueError(f"threshold {threshold} not in [1, {len(holder_list)}]")
    coefficients = [int.from_bytes(secret, "big")] + [
        int.from_bytes(entropy(_COEFFICIENT_BYTES), "big") % PRIME for _ in range(threshold - 1)
    ]
    shares = {}
    for holder in holder_list:
        x = holder + 1
        value = 0
        for c in reversed(coefficients):  # Horner
            value = (value * x + c) % PRIME
        shares[holder] = value.to_bytes(SHARE_BYTES, "big")
    return shares


@lru_cache(maxsize=4096)
def _lagrange_at_zero(holders: tuple[int, ...]) -> tuple[int, ...]:
    """Weights w_i = prod_{j != i} x_j / (x_j - x_i) mod p, with one modular inversion.

    The x are small (ids + 1), so the products are formed exactly and reduced once; the
    denominators are inverted together (Montgomery's batch trick).
    """
    xs = [h + 1 for h in holders]
    numerators, denominators = [], []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num *= xj
                den *= xj - xi
        numerators.append(num % PRIME)
        denominators.append(den % PRIME)
    prefix = [1]
    for den in denominators:
        prefix.append(prefix[-1] * den % PRIME)
    inverse = pow(prefix[-1], -1, PRIME)  # 1 / (d_0 ... d_{t-1})
    weights = [0] * len(xs)
    for i in range(len(xs) - 1, -1, -1):
        weights[i] = numerators[i] * inverse * prefix[i] % PRIME  # inverse * prefix = 1 / d_i
        inverse = inverse * denominators[i] % PRIME
    return tuple(weights)


def combine(shares: Mapping[int, bytes]) -> bytes | None:
    """Interpolate f(0) from exactly the given shares; None if it is not a 32-byte secret."""
    holders = tuple(sorted(shares))
    _check_holders(list(holders))
    weights = _lagrange_at_zero(holders)
    total = 0
    for holder, weight in zip(holders, weights, strict=True):
        value = int.from_bytes(shares[holder], "big")
        if len(shares[holder]) != SHARE_BYTES or value >= PRIME:
            return None
        total = (total + weight * value) % PRIME
    if total >= 1 << (8 * SECRET_BYTES):
        return None
    return total.to_bytes(SECRET_BYTES, "big")


def recover(
    shares: Mapping[int, bytes], threshold: int, is_valid: Callable[[bytes], bool]
) -> bytes | None:
    """The secret from ``threshold`` of ``shares`` that passes ``is_valid``; None if none does.

    t-subsets are tried in canonical order, at most ``MAX_RECOVERY_ATTEMPTS`` of them; with
    honest holders the first succeeds.
    """
    _check_holders(list(shares))
    if threshold < 1:
        raise ValueError(f"threshold {threshold} must be at least 1")
    if len(shares) < threshold:
        return None
    subsets = itertools.combinations(sorted(shares), threshold)
    for subset in itertools.islice(subsets, MAX_RECOVERY_ATTEMPTS):
        secret = combine({h: shares[h] for h in subset})
        if secret is not None and is_valid(secret):
            return secret
    return None
