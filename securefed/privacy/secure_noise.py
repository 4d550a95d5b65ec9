"""Randomness that protects records: uniforms, Bernoulli trials and Gaussians from AES-256-CTR.

DP-SGD's guarantee assumes the noise and the Poisson sampling are unpredictable to whoever
sees the update. torch's generator is a Mersenne Twister: 624 outputs reveal its state.
Opacus's ``secure_mode`` would draw from torchcsprng, which has no release for torch 2.x, so
securefed draws both from its own cryptographically secure generator:

    key (32 bytes, os.urandom) -> AES-256-CTR keystream (cryptography) -> uint64 words
      -> uniforms (k + 0.5) / 2^53 in (0, 1), k the top 53 bits of a word
      -> Bernoulli(q): uniform < q                          (Poisson sampling)
      -> standard normals by Box-Muller, in float64        (Gaussian noise)
      -> Poisson and geometric draws, in ``privacy.distributed.noise`` (Skellam and discrete
         Gaussian noise shares of institution-level DP)

A keystream of a random key is indistinguishable from random bytes as long as AES is a
pseudo-random permutation; one generator draws at most 2^64 blocks here, far inside the
birthday bound. Each generator has its own fresh key, so two generators (two rounds, two
institutions) never share a stream. Written by hand because no maintained library offers a
CSPRNG-backed vectorised normal sampler: numpy's ``Generator`` needs a ``BitGenerator`` whose
C interface cannot be fed from Python without a copy per draw, and ``secrets`` gives bytes only.

Exactness, stated: Bernoulli(q) is exact up to 2^-53 (the uniform's resolution); the normals
are Box-Muller on 53-bit uniforms, so |z| <= sqrt(2 ln 2^54) ~ 8.65 (the tail beyond has
probability ~1e-17 per draw); the cast to float32 rounds each draw. This does not defend
against floating-point attacks on the Gaussian mechanism (Jin et al. 2022); threat_model.md
says so. ``seeded_for_tests`` derives the key from an integer: reproducible, hence NOT private;
its label says so and every record that carries the label shows it.

numpy and cryptography only: no torch.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

NOISE_SOURCE_OS = "aes-256-ctr keystream (cryptography), key from os.urandom"
TEST_ONLY_PREFIX = "TEST ONLY, NOT PRIVATE: aes-256-ctr keystream with a key derived from seed"
_TEST_KEY_DOMAIN = b"securefed/test-only-noise-key/v1"
_WORD_BYTES = 8
_UNIFORM_SCALE = 2.0**-53


class AesCtrRandom:
    """A cryptographically secure stream of uniforms, Bernoulli trials and standard normals."""

    def __init__(self, key: bytes, *, label: str) -> None:
        if len(key) != 32:
            raise ValueError(f"AES-256 needs a 32-byte key, got {len(key)} bytes")
        # Nonce = initial counter block 0: safe because every key is used for one stream only.
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._zeros = bytearray()
        self._buffer = bytearray()
        self.label = label

    @classmethod
    def from_os_entropy(cls) -> AesCtrRandom:
        """A generator with a fresh 256-bit key from the OS: what every private run uses."""
        return cls(os.urandom(32), label=NOISE_SOURCE_OS)

    @classmethod
    def seeded_for_tests(cls, seed: int) -> AesCtrRandom:
        """A reproducible generator (key = SHA-256 of a domain tag and ``seed``): tests only."""
        key = hashlib.sha256(_TEST_KEY_DOMAIN + int(seed).to_bytes(16, "little")).digest()
        return cls(key, label=f"{TEST_ONLY_PREFIX} {int(seed)}")

    @property
    def test_only(self) -> bool:
        return self.label.startswith(TEST_ONLY_PREFIX)

    def words(self, n: int) -> np.ndarray:
        """``n`` uniformly random uint64 words from the keystream."""
        size = n * _WORD_BYTES
        if len(self._zeros) < size:  # grow the reused buffers; the keystream = E(0) xor 0
            self._zeros, self._buffer = bytearray(size), bytearray(size + 15)
        out = memoryview(self._buffer)[: size + 15]
        written = self._encryptor.update_into(memoryview(self._zeros)[:size], out)
        assert written == size  # CTR is a stream mode: no buffering
        return np.frombuffer(self._buffer, dtype=np.uint64, count=n).copy()  # (n,) uint64

    def uniform(self, n: int) -> np.ndarray:
        """``n`` float64 uniforms in the open interval (0, 1), 53 random bits each."""
        top = (self.words(n) >> np.uint64(11)).astype(np.float64)  # (n,) integers < 2^53
        return (top + 0.5) * _UNIFORM_SCALE

    def bernoulli(self, n: int, p: float) -> np.ndarray:
        """``n`` independent Bernoulli(p) trials as booleans (Poisson sampling of records)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {p!r}")
        return self.uniform(n) < p

    def standard_normal(self, n: int) -> np.ndarray:
        """``n`` independent N(0, 1) draws in float64 (Box-Muller, both outputs used)."""
        pairs = (n + 1) // 2
        u = self.uniform(2 * pairs)  # (2m,)
        radius = np.sqrt(-2.0 * np.log(u[:pairs]))  # u in (0, 1): log is finite
        angle = (2.0 * np.pi) * u[pairs:]
        out = np.empty(2 * pairs, dtype=np.float64)
        np.multiply(radius, np.cos(angle), out=out[:pairs])
        np.multiply(radius, np.sin(angle), out=out[pairs:])
        return out[:n]
