"""The stage table is the protocol's one stage order: each close opens the next row's
request, a walk of the table alone is a whole round, and every stage name in the package
(dropout config, transcript, Flower message types) is the table's spelling."""

from __future__ import annotations

import numpy as np
from secagg_harness import make_context, pinned_entropy

from securefed.config import DropoutConfig
from securefed.secagg import (
    STAGE_TABLE,
    STAGES,
    ClientInput,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    decode_sum,
    encode_input,
    simulate_round,
)

IDS = list(range(6))
PARAMS = SecAggParams(adversary="curious")


def _inputs() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(3)
    return {u: rng.normal(0, 0.1, 20).astype(np.float32) for u in IDS}


def test_walking_the_table_alone_is_a_round():
    """A driver that knows nothing but STAGE_TABLE: each close returns the next row's request
    type (one for all where the row says broadcast), and the sum is the simulated one."""
    context = make_context(len(IDS), params=PARAMS, dimension=20, extras_count=0)
    clients = {u: SecAggClient(u, context, entropy=pinned_entropy(b"walk/%d" % u)) for u in IDS}
    server = SecAggServer(context, invited=frozenset(IDS))
    deltas = _inputs()
    opened = None
    for index, stage in enumerate(STAGE_TABLE):
        for u in IDS:
            request = stage.request_for(opened, u)
            if stage.request is not None:
                assert isinstance(request, stage.request), stage.name
            rounding = np.random.default_rng(u)
            encoded = encode_input(deltas[u], 1.0, np.zeros(0), PARAMS.quantization, rounding)
            reply = clients[u].answer(stage, request, encoded if stage.takes_input else None)
            assert isinstance(reply, stage.reply)
            server.accept(reply)
        opened = server.close(stage)
        assert server.stage == (STAGES[index + 1] if index + 1 < len(STAGES) else "done")
        if index + 1 < len(STAGE_TABLE) and STAGE_TABLE[index + 1].broadcast:
            assert isinstance(opened, STAGE_TABLE[index + 1].request)
    expected = simulate_round(
        round_index=context.round_index,
        inputs={u: ClientInput(deltas[u], rounding=np.random.default_rng(u)) for u in IDS},
        params=PARAMS,
        global_adapter_hash=context.global_adapter_hash,
        vector_spec_hash=context.vector_spec_hash,
    )
    walked = decode_sum(opened, 20, len(IDS), PARAMS.quantization)
    assert np.array_equal(walked.delta_sum, expected.delta_sum)


def test_every_stage_name_is_the_tables():
    dropout_stages = [
        f for f in DropoutConfig.model_fields if f not in ("rate", "stages", "rounds")
    ]
    assert tuple(dropout_stages) == STAGES
    from securefed.flower import wire
    from securefed.flower.client_app import app

    routed = [t for t in app._registered_funcs if t.startswith("train.")]
    assert routed == [wire.message_type(stage) for stage in STAGE_TABLE]
