"""The in-process driver the federation calls, the roster, and the wire format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from secagg_harness import ManualRound, make_context, random_inputs

from securefed import secagg
from securefed.errors import ConfigError, InvalidMessage, ProtocolAbort
from securefed.secagg import (
    ClientInput,
    DropoutSchedule,
    SecAggParams,
    generate_roster,
    load_roster,
    simulate_round,
)
from securefed.secagg.advertise import AdvertiseKeys
from securefed.secagg.consistency import SurvivorSet, SurvivorSignature
from securefed.secagg.crypto import ed25519_public_key
from securefed.secagg.entropy import TestOnlyRandomnessWarning, seeded_entropy
from securefed.secagg.masked_input import MaskedInput, ShareDelivery
from securefed.secagg.quantize import error_bound
from securefed.secagg.roster import generate_identities
from securefed.secagg.share_keys import KeyDirectory, ShareKeys
from securefed.secagg.unmasking import UnmaskRequest, UnmaskResponse

G, S = b"g" * 32, b"s" * 32


def _signed(n: int, **kwargs) -> SecAggParams:
    """Semi-malicious params with a fresh in-memory identity per client (the default run)."""
    roster, keys = generate_identities(range(n))
    return SecAggParams(roster=roster, identity_keys=keys, **kwargs)


def _inputs(n: int, d: int, seed: int = 0) -> dict[int, ClientInput]:
    rng = np.random.default_rng(seed)
    return {
        u: ClientInput(
            delta=rng.normal(scale=0.05, size=d).astype(np.float32),
            weight=float(rng.uniform(0.1, 1.0)),
            extras=np.array([1.0, rng.uniform(0, 5), rng.uniform(0, 1)]),
        )
        for u in range(n)
    }


def _truth(inputs, survivors, clip: float):
    delta = sum(
        inputs[u].weight
        * min(1.0, clip / np.linalg.norm(inputs[u].delta.astype(np.float64)))
        * inputs[u].delta.astype(np.float64)
        for u in survivors
    )
    return delta, sum(inputs[u].extras for u in survivors)


def test_round_returns_weighted_sums_within_the_quantization_bound() -> None:
    inputs, params = _inputs(6, 500), _signed(6, clip_norm=1.0)
    out = simulate_round(
        round_index=3, inputs=inputs, params=params, global_adapter_hash=G, vector_spec_hash=S
    )
    assert out.survivors == tuple(range(6)) and out.wrap_count == 0
    delta, extras = _truth(inputs, out.survivors, 1.0)
    delta_bound, extras_bound = error_bound(6, params.quantization)
    assert np.max(np.abs(out.delta_sum - delta)) <= delta_bound
    assert np.max(np.abs(out.extras_sum - extras)) <= extras_bound + 1e-12
    assert out.delta_sum.dtype == np.float64 and out.extras_sum.shape == (3,)


def test_transcript_is_json_and_records_the_round() -> None:
    dropout = DropoutSchedule(explicit={"masked_input": {2}, "consistency_check": {4}})
    out = simulate_round(
        round_index=1,
        inputs=_inputs(8, 1000),
        params=_signed(8),
        global_adapter_hash=G,
        vector_spec_hash=S,
        dropout=dropout,
    )
    t = json.loads(json.dumps(out.transcript))
    assert len(bytes.fromhex(t["session_id"])) == 32
    assert (t["graph"], t["degree"], t["threshold"]) == ("complete", 7, 6)
    assert t["dropouts"] == {
        "advertise_keys": [],
        "share_keys": [],
        "masked_input": [2],
        "consistency_check": [4],
        "unmasking": [],
    }
    # 4 did not sign but its input is in the sum: the signers' shares remove its self-mask
    assert t["participants"]["masked_input"] == [0, 1, 3, 4, 5, 6, 7] == list(out.survivors)
    assert t["participants"]["consistency_check"] == [0, 1, 3, 5, 6, 7]
    assert t["participants"]["unmasking"] == [0, 1, 3, 5, 6, 7]
    assert t["survivor_set_signed"] is True
    assert t["wrap_count"] == 0 and t["quantization"]["bits"] == 20
    # uploads: 4 bytes per coordinate (d = 1000 plus 2 limbs per extra), and key traffic of
    # under 400 bytes per neighbour (keys, sealed shares, released shares, signatures)
    masked_bytes = 4 * (1000 + 2 * 3)
    assert masked_bytes < t["bytes"]["0"]["up"] < masked_bytes + 400 * 7
    assert t["bytes"]["2"]["up"] < masked_bytes  # dropped before uploading its input


def test_transcript_names_where_the_keys_came_from() -> None:
    kwargs = {
        "round_index": 0,
        "inputs": _inputs(3, 10),
        "params": _signed(3),
        "global_adapter_hash": G,
        "vector_spec_hash": S,
    }
    assert simulate_round(**kwargs).transcript["entropy"] == "os"
    with pytest.warns(TestOnlyRandomnessWarning):
        seeded = seeded_entropy(b"seed")
    assert simulate_round(**kwargs, entropy=seeded).transcript["entropy"] == "seeded test stream"
    # a source nobody labelled is never taken for the OS
    unlabelled = simulate_round(**kwargs, entropy=lambda n: os.urandom(n)).transcript["entropy"]
    assert unlabelled == "unlabelled"


def test_random_dropouts_are_drawn_from_the_given_rng() -> None:
    kwargs = {
        "round_index": 0,
        "params": SecAggParams(adversary="curious", threshold=2),
        "global_adapter_hash": G,
        "vector_spec_hash": S,
        "dropout": DropoutSchedule(rate=0.2, stages=("masked_input",)),
    }
    a = simulate_round(inputs=_inputs(10, 5), rng=np.random.default_rng(5), **kwargs)
    b = simulate_round(inputs=_inputs(10, 5), rng=np.random.default_rng(5), **kwargs)
    assert a.survivors == b.survivors and len(a.survivors) < 10
    assert a.transcript["dropouts"]["share_keys"] == []


def test_too_few_survivors_abort_with_counts() -> None:
    dropout = DropoutSchedule(explicit={"advertise_keys": {0}, "unmasking": {1}})
    with pytest.raises(ProtocolAbort, match="2 clients remained at unmasking, threshold 3") as err:
        simulate_round(
            round_index=9,
            inputs=_inputs(4, 10),
            params=_signed(4),
            global_adapter_hash=G,
            vector_spec_hash=S,
            dropout=dropout,
        )
    assert err.value.round_index == 9


def test_roster_file_round_trip_and_signed_round(tmp_path) -> None:
    path = tmp_path / "roster.json"
    roster = generate_roster(range(4), path)
    assert load_roster(path) == roster
    assert (tmp_path / "roster.keys.json").stat().st_mode & 0o777 == 0o600
    out = simulate_round(
        round_index=0,
        inputs=_inputs(4, 20),
        params=SecAggParams(roster=path),
        global_adapter_hash=G,
        vector_spec_hash=S,
    )
    assert out.transcript["identities"] is True
    with pytest.raises(ConfigError, match="none for \\[4\\]"):
        simulate_round(
            round_index=0,
            inputs=_inputs(5, 20),
            params=SecAggParams(roster=path),
            global_adapter_hash=G,
            vector_spec_hash=S,
        )


def test_a_lying_server_model_without_a_roster_is_refused() -> None:
    kwargs = {"round_index": 0, "inputs": _inputs(4, 10), "global_adapter_hash": G}
    with pytest.raises(ConfigError, match="secure_aggregation.adversary='semi_malicious'"):
        simulate_round(params=SecAggParams(), vector_spec_hash=S, **kwargs)
    out = simulate_round(params=SecAggParams(adversary="curious"), vector_spec_hash=S, **kwargs)
    assert out.transcript["survivor_set_signed"] is False


def test_in_memory_identities_are_fresh_and_match_their_keys() -> None:
    roster, keys = generate_identities([3, 1, 2])
    assert sorted(roster.public_keys) == sorted(keys) == [1, 2, 3]
    assert all(ed25519_public_key(keys[u]) == roster.public_keys[u] for u in keys)
    assert generate_identities([1])[1][1] != keys[1]
    with pytest.raises(ConfigError, match="client ids >= 0"):
        generate_identities([-1])


def test_malformed_roster_is_a_config_error(tmp_path) -> None:
    bad = tmp_path / "roster.json"
    bad.write_text('{"format": "securefed-roster/v1", "clients": {"0": "abcd"}}')
    with pytest.raises(ConfigError, match="32-byte keys"):
        load_roster(bad)


def _one_of_each_message():
    ids = [1, 2, 3]
    context = make_context(3, dimension=5)
    manual = ManualRound(ids, context)
    adverts = [manual.clients[u].advertise_keys() for u in ids]
    for a in adverts:
        manual.server.accept(a)
    directory = manual.server.close_advertise_keys()
    shares = manual.clients[1].share_keys(directory)
    for u in (2, 3):
        manual.server.accept(manual.clients[u].share_keys(directory))
    manual.server.accept(shares)
    deliveries = manual.server.close_share_keys()
    masked = manual.clients[1].masked_input(deliveries[1], random_inputs([1], 5)[1])
    survivors = SurvivorSet(manual.server.session_id, (1, 2, 3))
    signature = manual.clients[1].sign_survivors(survivors)
    signatures = ((1, b""), (2, b""), (3, b""))
    request = UnmaskRequest(manual.server.session_id, (1, 2, 3), (), signatures)
    response = manual.clients[1].unmask(request)
    return [
        adverts[0],
        directory,
        shares,
        deliveries[1],
        masked,
        survivors,
        signature,
        request,
        response,
    ]


MESSAGE_TYPES = [
    AdvertiseKeys,
    KeyDirectory,
    ShareKeys,
    ShareDelivery,
    MaskedInput,
    SurvivorSet,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
]


def test_every_message_round_trips_through_bytes_and_rejects_damage() -> None:
    for msg, kind in zip(_one_of_each_message(), MESSAGE_TYPES, strict=True):
        assert type(msg) is kind
        data = msg.to_bytes()
        again = kind.from_bytes(data)
        assert again.to_bytes() == data
        for damaged in (data[:-1], data + b"\x00", b"\xff" + data[1:], b""):
            with pytest.raises(InvalidMessage):
                kind.from_bytes(damaged)
    masked = _one_of_each_message()[4]
    assert len(masked.to_bytes()) - 4 * masked.vector.size < 64  # 4 bytes per coordinate


def test_package_is_numpy_and_bytes_only_with_one_door_to_hazmat() -> None:
    code = "import sys, securefed.secagg; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    package = Path(secagg.__file__).parent
    importers = sorted(
        p.name
        for p in package.glob("*.py")
        if re.search(r"^\s*(from|import) cryptography\.hazmat", p.read_text(), re.MULTILINE)
    )
    assert importers == ["crypto.py"]
