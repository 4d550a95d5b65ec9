"""Institution-level DP without a trusted server: distributed discrete noise in the secure sum.

Each client adds a share of discrete noise (Skellam or discrete Gaussian) to its rotated,
scaled, rounded update before masking, so the secure sum carries the full noise and nobody,
the server included, sees a less noisy value. numpy only (no torch).

- ``rotation``: randomized Walsh-Hadamard rotation from a public per-round seed, and back.
- ``noise``: Skellam and discrete Gaussian samplers on the AES-CTR keystream of
  ``securefed.privacy.secure_noise``.
- ``parameters``: scale, modular headroom and noise share for a target epsilon
  (``plan_distributed_dp`` -> ``DistributedDpPlan``).
- ``encoding``: the client encoder into secure aggregation's uint32 layout, the server decoder.
- ``events`` / ``accounting``: the institution-level ledger event and its RDP -> epsilon.
- ``ledger``: the federation's institution-level ledger (JSON in the run folder, recomputable).

May import: numpy, scipy, dp_accounting, ``securefed.errors``, ``securefed.privacy.event_ledger``
(the ledger base it shares with the sample-level ledger), ``securefed.privacy.secure_noise``
(the CSPRNG its noise shares come from) -- never torch or flwr.
Exports nothing here: import the submodule you need.
"""
