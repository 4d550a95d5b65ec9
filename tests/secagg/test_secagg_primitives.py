"""Shamir sharing, vectorised masking against a naive reference, and the labelled derivations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secagg_harness import pinned_entropy

from securefed.secagg import crypto, shamir
from securefed.secagg.masking import apply_masks
from securefed.secagg.session import mask_sign, pair_mask_key, share_encryption_keys


def _is_probable_prime(p: int) -> bool:
    """Miller-Rabin with the first 20 prime bases (independent check of the field modulus)."""
    d, r = p - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71):
        x = pow(a, d, p)
        if x in (1, p - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, p)
            if x == p - 1:
                break
        else:
            return False
    return True


def test_field_modulus_is_prime_and_holds_a_secret() -> None:
    assert _is_probable_prime(shamir.PRIME)
    assert shamir.PRIME > 2 ** (8 * shamir.SECRET_BYTES)


@settings(max_examples=25, deadline=None)
@given(holders=st.sets(st.integers(0, 2**40), min_size=2, max_size=7), data=st.data())
def test_every_t_subset_recovers_and_fewer_do_not(holders: set[int], data) -> None:
    threshold = data.draw(st.integers(2, len(holders)))
    secret = bytes(data.draw(st.binary(min_size=32, max_size=32)))
    shares = shamir.split(secret, holders, threshold, pinned_entropy(b"shamir"))
    for subset in itertools.combinations(sorted(holders), threshold):
        assert shamir.combine({h: shares[h] for h in subset}) == secret
    few = dict(itertools.islice(shares.items(), threshold - 1))
    assert shamir.recover(few, threshold, lambda s: True) is None


def test_recover_skips_a_bad_share_using_the_commitment() -> None:
    secret = b"\x42" * 32
    shares = shamir.split(secret, range(6), 3, pinned_entropy(b"bad-share"))
    shares[0] = (int.from_bytes(shares[0], "big") ^ 1).to_bytes(shamir.SHARE_BYTES, "big")
    assert shamir.combine({h: shares[h] for h in (0, 1, 2)}) != secret
    assert shamir.recover(shares, 3, lambda s: s == secret) == secret


def _naive_masks(n: int, masks: list[tuple[bytes, int]]) -> np.ndarray:
    """Reference: expand each mask in one go and add it with Python-int arithmetic mod 2^32."""
    total = [0] * n
    for key, sign in masks:
        stream = np.frombuffer(crypto.aes_ctr_encrypt(key, bytes(16), bytes(4 * n)), "<u4")
        for i, word in enumerate(stream.tolist()):
            total[i] = (total[i] + sign * word) % 2**32
    return np.array(total, dtype=np.uint32)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 300),
    chunk_words=st.integers(1, 70),
    signs=st.lists(st.sampled_from([1, -1]), min_size=1, max_size=6),
)
def test_vectorised_masking_equals_naive_reference(
    n: int, chunk_words: int, signs: list[int]
) -> None:
    masks = [(bytes([i + 1]) * 32, s) for i, s in enumerate(signs)]
    acc = np.zeros(n, dtype=np.uint32)
    apply_masks(acc, masks, chunk_words=chunk_words)
    np.testing.assert_array_equal(acc, _naive_masks(n, masks))


def test_opposite_masks_cancel_and_masks_cover_32_bits() -> None:
    key = b"\x07" * 32
    acc = np.arange(1000, dtype=np.uint32)
    apply_masks(acc, [(key, 1), (b"\x08" * 32, 1), (key, -1), (b"\x08" * 32, -1)])
    np.testing.assert_array_equal(acc, np.arange(1000, dtype=np.uint32))
    mask = np.zeros(1 << 14, dtype=np.uint32)
    apply_masks(mask, [(key, 1)])
    assert mask.max() >= 2**31 and np.any(mask & 1)  # top and bottom bits both used
    assert abs(float(mask.mean()) / 2**32 - 0.5) < 0.02  # uniform on [0, 2^32)


def test_pair_keys_are_symmetric_and_domain_separated() -> None:
    a, b = crypto.KeyAgreement(b"\x01" * 32), crypto.KeyAgreement(b"\x02" * 32)
    sid, other_sid = b"s" * 32, b"t" * 32
    assert pair_mask_key(sid, a, b.public, 3, 9) == pair_mask_key(sid, b, a.public, 9, 3)
    assert pair_mask_key(sid, a, b.public, 3, 9) != pair_mask_key(other_sid, a, b.public, 3, 9)
    # the same X25519 secret never yields the same key for two purposes or directions
    send_3_to_9, receive_9_to_3 = share_encryption_keys(sid, a, b.public, 3, 9)
    assert (receive_9_to_3, send_3_to_9) == share_encryption_keys(sid, b, a.public, 9, 3)
    assert send_3_to_9 != receive_9_to_3
    assert send_3_to_9 != pair_mask_key(sid, a, b.public, 3, 9)
    assert mask_sign(3, 9) == -mask_sign(9, 3) == 1


def test_apply_masks_rejects_a_non_uint32_accumulator() -> None:
    with pytest.raises(ValueError, match="uint32"):
        apply_masks(np.zeros(4, dtype=np.int64), [(b"\x01" * 32, 1)])


@pytest.mark.parametrize(
    "holders",
    [[-1, 2, 3], [1, 1, 2], [1, 2, 2**64], [1, 2.0, 3], [True, 2, 3]],
    ids=["negative", "repeated", "beyond-u64", "float", "bool"],
)
def test_every_index_that_reaches_shamir_is_checked(holders) -> None:
    secret = bytes(range(32))
    with pytest.raises(ValueError, match="share holders"):
        shamir.split(secret, holders, 2, pinned_entropy(b"idx"))
    good = shamir.split(secret, [1, 2, 3], 2, pinned_entropy(b"idx"))
    shares = dict(zip(holders, good.values(), strict=False))
    if len(shares) == len(holders):  # a dict cannot repeat a holder
        with pytest.raises(ValueError, match="share holders"):
            shamir.combine(shares)
        with pytest.raises(ValueError, match="share holders"):
            shamir.recover(shares, 2, lambda s: True)


def test_the_threshold_runs_from_one_to_every_holder() -> None:
    """t = 1 (every share is the secret) and t = n are both shares; 0 and n + 1 are refused."""
    secret = bytes(range(32))
    for threshold in (1, 3):
        shares = shamir.split(secret, [4, 5, 6], threshold, pinned_entropy(b"bounds"))
        assert all(shamir.combine({h: s}) == secret for h, s in shares.items()) == (threshold == 1)
        assert shamir.combine(shares) == secret
    for threshold in (0, 4):
        with pytest.raises(ValueError, match=f"threshold {threshold} not in"):
            shamir.split(secret, [4, 5, 6], threshold, pinned_entropy(b"bounds"))
