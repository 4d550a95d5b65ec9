"""Identity roster: the pinned Ed25519 public key of every institution, as a JSON file.

With a roster, each client signs its per-round public keys and every client checks every
other client's signature, so the server can neither swap keys (man in the middle) nor
invent clients (Sybils). Format (public; share it with every institution):

    {"format": "securefed-roster/v1",
     "clients": {"0": "<64 hex chars: raw Ed25519 public key>", "1": "...", ...}}

Each institution keeps its own private key. For the in-process simulation all private keys
sit in one file beside the roster, ``<roster stem>.keys.json`` (format
``securefed-identity-keys/v1``, mode 0600) -- a convenience for tests and demos only.

Generate both with ``generate_roster`` or ``python -m securefed.secagg.roster PATH ID ...``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from securefed.errors import ConfigError
from securefed.secagg import crypto
from securefed.secagg.entropy import Entropy, os_entropy

ROSTER_FORMAT = "securefed-roster/v1"
KEYS_FORMAT = "securefed-identity-keys/v1"
_ROSTER_KEY = "secure_aggregation.identity_roster"


@dataclass(frozen=True)
class Roster:
    """Client id -> raw 32-byte Ed25519 public key."""

    public_keys: Mapping[int, bytes]

    def __contains__(self, client_id: object) -> bool:
        return client_id in self.public_keys


def default_keys_path(roster_path: str | Path) -> Path:
    """Where the simulation keeps the private keys of a roster: ``<stem>.keys.json``."""
    p = Path(roster_path)
    return p.with_name(p.stem + ".keys.json")


def _read_hex_map(path: Path, fmt: str, field: str) -> dict[int, bytes]:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != fmt:
            raise ValueError(f"format is not {fmt}")
        out = {int(k): bytes.fromhex(v) for k, v in data[field].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(_ROSTER_KEY, str(path), f"a {fmt} JSON file ({exc})") from None
    bad = [k for k, v in out.items() if len(v) != crypto.KEY_BYTES or k < 0]
    if bad:
        raise ConfigError(_ROSTER_KEY, str(path), f"32-byte keys for ids >= 0; bad ids {bad}")
    return out


def load_roster(path: str | Path) -> Roster:
    """Read a roster file; a malformed one is a ``ConfigError`` naming the file."""
    return Roster(_read_hex_map(Path(path), ROSTER_FORMAT, "clients"))


def load_identity_keys(path: str | Path) -> dict[int, bytes]:
    """Read a simulation key file: client id -> raw Ed25519 private key."""
    return _read_hex_map(Path(path), KEYS_FORMAT, "keys")


def generate_identities(
    client_ids: Iterable[int], *, entropy: Entropy = os_entropy
) -> tuple[Roster, dict[int, bytes]]:
    """One fresh Ed25519 identity per client, in memory: the roster and the private keys.

    What ``securefed simulate`` gives its simulated institutions when no roster file is
    configured; the keys come from OS entropy and live only as long as the run.
    """
    ids = sorted(set(client_ids))
    bad = [cid for cid in ids if cid < 0]
    if bad:
        raise ConfigError(_ROSTER_KEY, bad, "client ids >= 0")
    private = {cid: entropy(crypto.KEY_BYTES) for cid in ids}
    return Roster({cid: crypto.ed25519_public_key(sk) for cid, sk in private.items()}), private


def generate_roster(
    client_ids: Iterable[int],
    roster_path: str | Path,
    keys_path: str | Path | None = None,
    *,
    entropy: Entropy = os_entropy,
) -> Roster:
    """Make one identity key per client; write the roster and the (secret) key file."""
    roster, private = generate_identities(client_ids, entropy=entropy)
    roster_path = Path(roster_path)
    keys_path = Path(keys_path) if keys_path is not None else default_keys_path(roster_path)
    clients = {str(c): pk.hex() for c, pk in roster.public_keys.items()}
    roster_path.write_text(json.dumps({"format": ROSTER_FORMAT, "clients": clients}, indent=1))
    keys = {str(c): sk.hex() for c, sk in private.items()}
    body = json.dumps({"format": KEYS_FORMAT, "keys": keys}, indent=1)
    fd = os.open(keys_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    return roster


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m securefed.secagg.roster ROSTER.json CLIENT_ID [CLIENT_ID ...]")
    generate_roster([int(a) for a in sys.argv[2:]], sys.argv[1])
    print(f"wrote {sys.argv[1]} and {default_keys_path(sys.argv[1])} (keep the latter secret)")
