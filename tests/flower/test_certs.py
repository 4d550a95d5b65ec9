"""The deployment's certificates: the SuperLink certificate chains to the CA and names the
hosts it is dialled at; node keys are the OpenSSH P-384 pairs Flower 1.42 loads."""

from __future__ import annotations

import ipaddress
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from securefed.flower.certs import make_node_key, make_tls


def test_superlink_certificate_is_signed_by_the_ca_for_its_hosts(tmp_path):
    make_tls(tmp_path, ["superlink.example.org", "10.0.0.5"])
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "superlink.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["superlink.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    for secret in ("ca.key", "superlink.key"):
        assert stat.S_IMODE((tmp_path / secret).stat().st_mode) == 0o600


def test_node_key_pair_matches_and_is_p384(tmp_path):
    private_path, public_path = make_node_key(tmp_path, 4)
    private = load_ssh_private_key(private_path.read_bytes(), None)
    public = load_ssh_public_key(public_path.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP384R1)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
