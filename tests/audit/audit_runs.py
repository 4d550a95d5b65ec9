"""The configs of the tests' two tiny runs, and the parametrization over them."""

from __future__ import annotations

TINY = [
    "task.synthetic.num_examples=120",
    "training.rounds=2",
    "training.local_steps=2",
    "training.batch_size=8",
    "model.max_length=32",
    "partition.num_clients=3",
    "training.clients_per_round=3",
]
PRIVATE = [
    "privacy.dp.enabled=true",
    "privacy.dp.target_epsilon=8.0",
    "privacy.dp.noise_multiplier=1.2",  # fixed: calibration would cost a minute here
    # torch's generator warns once per institution and round: the warnings test needs a
    # warning that repeats (the CSPRNG default is silent); test_dp_sgd covers the CSPRNG path
    "privacy.dp.noise_source=torch",
    "secure_aggregation.enabled=true",
    "secure_aggregation.threshold=2",
    "secure_aggregation.dropout.masked_input=[1]",
    "secure_aggregation.dropout.rounds=[1]",
]
PLAIN = ["privacy.dp.enabled=false", "secure_aggregation.enabled=false", "baselines=[]"]
CANARY = ["audit.canaries=200", "audit.canary_institutions=[0,2]"]

# Parametrize over both tiny runs.
BOTH_RUNS = ["plain", "private"]
