"""Certificates and keys for a Flower deployment, made with the ``cryptography`` package.

    ca.crt / ca.key            a private certificate authority (keep ca.key offline)
    superlink.crt / .key       the SuperLink's TLS certificate, signed by the CA, with the
                               host names and addresses the nodes and the CLI dial
    node-<id> / node-<id>.pub  one SuperNode authentication key pair per institution
                               (ECDSA P-384, OpenSSH format, as Flower 1.42 expects)

Nodes verify the SuperLink with ``ca.crt`` (``--root-certificates``); the SuperLink admits
only nodes whose public key was registered (``flwr supernode register node-<id>.pub``) when
it runs with ``--enable-supernode-auth``. Flower 1.42 has no client TLS certificates (mTLS):
node authentication is by these signed requests.

    python -m securefed.flower.certs OUT_DIR --host superlink.example.org   # CA + SuperLink
    python -m securefed.flower.certs OUT_DIR --keys-only --nodes 2           # one node key
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 365


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> x509.CertificateBuilder:
    """A certificate for ``key``'s public half, valid from ``now`` for ``VALID_DAYS``."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )


def make_tls(out: Path, hosts: Iterable[str] = ("localhost", "127.0.0.1")) -> None:
    """Write a CA and a SuperLink certificate valid for ``hosts`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securefed federation CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA384())
    )
    hosts = list(hosts)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert = (
        _builder(subject, ca_name, key, now)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    (out / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_secret(out / "ca.key", _pem_key(ca_key))
    (out / "superlink.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_secret(out / "superlink.key", _pem_key(key))


def make_node_key(out: Path, institution: int) -> tuple[Path, Path]:
    """Write one SuperNode authentication key pair; returns (private, public) paths."""
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = out / f"node-{institution}", out / f"node-{institution}.pub"
    _write_secret(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    return private, public


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--nodes", type=int, nargs="*", default=[], metavar="ID")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help="host name or address the SuperLink is reached at (repeatable)",
    )
    parser.add_argument("--keys-only", action="store_true", help="only the node keys")
    args = parser.parse_args(argv)
    if not args.keys_only:
        make_tls(args.out, args.host or ["localhost", "127.0.0.1"])
        print(f"wrote ca.crt, ca.key, superlink.crt, superlink.key to {args.out}")
    for institution in args.nodes:
        private, public = make_node_key(args.out, institution)
        print(f"wrote {private} (keep it on the node) and {public} (register it)")


if __name__ == "__main__":
    main()
