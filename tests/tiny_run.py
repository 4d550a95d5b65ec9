"""The smallest run that still trains: 3 institutions, 2 rounds of 2 steps, no secure
aggregation and no baselines (what the resume, optimizer, FedProx and tuning tests vary)."""

TINY = [
    "task.synthetic.num_examples=96",
    "training.rounds=2",
    "training.local_steps=2",
    "training.batch_size=8",
    "model.max_length=32",
    "partition.num_clients=3",
    "training.clients_per_round=2",
    "secure_aggregation.enabled=false",
    "baselines=[]",
]
