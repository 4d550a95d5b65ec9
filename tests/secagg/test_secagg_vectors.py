"""Published test vectors for every primitive, read from the ``cryptography-vectors`` package.

Provenance (file inside the package -> source):
- asymmetric/X25519/rfc7748.txt -> RFC 7748 section 5.2 (X25519 scalar multiplication)
- KDF/rfc-5869-HKDF-SHA256.txt -> RFC 5869 appendix A.1-A.3 (HKDF-SHA256)
- ciphers/AES/CTR/aes-256-ctr.txt -> RFC 3686 section 6 (AES-256-CTR). The package ships no
  SP 800-38A CTR file; RFC 3686's AES-256 vectors exercise the same CTR primitive.
- asymmetric/Ed25519/sign.input -> the RFC 8032 / ed25519.cr.yp.to reference vectors
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography_vectors import open_vector_file

from securefed.errors import InvalidMessage
from securefed.secagg import crypto
from securefed.secagg.masking import apply_masks


def _records(path: str) -> list[dict[str, str]]:
    """Parse ``KEY = value`` lines (NIST/RFC vector style); each ``COUNT`` opens a record."""
    records: list[dict[str, str]] = []
    with open_vector_file(path, "r") as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith(("#", "[")) or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip().upper()
            if key == "COUNT":
                records.append({})
            records[-1][key] = value.strip()
    return records


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


X25519 = [r for r in _records("asymmetric/X25519/rfc7748.txt") if "OUTPUT_U" in r]
HKDF = [r for r in _records("KDF/rfc-5869-HKDF-SHA256.txt") if "OKM" in r]
AES_CTR = [r for r in _records("ciphers/AES/CTR/aes-256-ctr.txt") if "CIPHERTEXT" in r]


def test_vector_files_were_found() -> None:
    assert (len(X25519), len(HKDF), len(AES_CTR)) == (3, 3, 3)


@pytest.mark.parametrize("vector", X25519, ids=lambda v: v["COUNT"])
def test_x25519_rfc7748(vector: dict[str, str]) -> None:
    shared = crypto.x25519_exchange(_hex(vector["INPUT_SCALAR"]), _hex(vector["INPUT_U"]))
    assert shared == _hex(vector["OUTPUT_U"])


def test_x25519_rejects_small_order_points() -> None:
    private = bytes(range(32))
    for bad in (bytes(32), (1).to_bytes(32, "little")):
        with pytest.raises(InvalidMessage):
            crypto.x25519_exchange(private, bad)


@pytest.mark.parametrize("vector", HKDF, ids=lambda v: v["COUNT"])
def test_hkdf_sha256_rfc5869(vector: dict[str, str]) -> None:
    okm = crypto.derive_key(
        _hex(vector["IKM"]),
        salt=_hex(vector["SALT"]),
        info=_hex(vector["INFO"]),
        length=int(vector["L"]),
    )
    assert okm == _hex(vector["OKM"])


@pytest.mark.parametrize("vector", AES_CTR, ids=lambda v: v["COUNT"])
def test_aes256_ctr_rfc3686(vector: dict[str, str]) -> None:
    out = crypto.aes_ctr_encrypt(_hex(vector["KEY"]), _hex(vector["IV"]), _hex(vector["PLAINTEXT"]))
    assert out == _hex(vector["CIPHERTEXT"])


@pytest.mark.parametrize("chunk_words", [4, 5, 7, 64])
def test_mask_is_the_aes_ctr_keystream_from_counter_zero(chunk_words: int) -> None:
    """Chunked mask expansion continues the CTR stream exactly across chunk boundaries."""
    key = _hex(AES_CTR[2]["KEY"])
    n = 103
    expected = np.frombuffer(crypto.aes_ctr_encrypt(key, bytes(16), bytes(4 * n)), "<u4")
    acc = np.zeros(n, dtype=np.uint32)
    apply_masks(acc, [(key, 1)], chunk_words=chunk_words)
    np.testing.assert_array_equal(acc, expected)


def _ed25519_vectors(limit: int = 16) -> list[tuple[bytes, bytes, bytes, bytes]]:
    out = []
    with open_vector_file("asymmetric/Ed25519/sign.input", "r") as handle:
        for line in list(handle)[:limit]:
            secret_public, public, message, signature_message = line.strip().split(":")[:4]
            message_bytes = _hex(message)
            out.append(
                (
                    _hex(secret_public)[:32],
                    _hex(public),
                    message_bytes,
                    _hex(signature_message)[:64],
                )
            )
    return out


@pytest.mark.parametrize("vector", _ed25519_vectors(), ids=lambda v: v[2][:4].hex() or "empty")
def test_ed25519_rfc8032(vector: tuple[bytes, bytes, bytes, bytes]) -> None:
    private, public, message, signature = vector
    assert crypto.ed25519_public_key(private) == public
    assert crypto.sign(private, message) == signature
    crypto.verify_signature(public, signature, message)
    with pytest.raises(InvalidMessage):
        crypto.verify_signature(public, signature, message + b"x")


def test_aead_binds_key_and_associated_data() -> None:
    key, other = bytes(range(32)), bytes(range(1, 33))
    sealed = crypto.seal(key, b"share", b"session|1|2")
    assert crypto.open_sealed(key, sealed, b"session|1|2") == b"share"
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    for k, ct, aad in (
        (other, sealed, b"session|1|2"),
        (key, sealed, b"session|2|1"),
        (key, tampered, b"session|1|2"),
        (key, sealed[:10], b"session|1|2"),
    ):
        with pytest.raises(InvalidMessage):
            crypto.open_sealed(k, ct, aad)
