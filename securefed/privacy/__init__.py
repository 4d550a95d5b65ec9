"""Differential privacy: sample-level for each institution, institution-level for the federation.

- ``events``: what a round released, as immutable JSON-able data.
- ``accounting``: events to (epsilon, delta) by dp-accounting PLD (of record), RDP and Opacus
  PRV (cross-checks); noise calibration; default delta. Sample-level use of dp_accounting.
- ``ledger``: one institution's ledger across rounds and resumed runs; budget checks.
- ``event_ledger``: what every ledger shares (round order, delta, target, JSON round trip).
- ``institution``: one run's institution-level DP: its plan, each round's codec, its ledger.
- ``budget``: each institution's noise plan across the run, its ledger, and when it stops.
- ``plan``: the torch-free types of one local round: ``DPPlan`` in, ``LocalStats`` out.
- ``dp_sgd``: Opacus DP-SGD on the adapter parameters (Poisson sampling, per-example clipping,
  Gaussian noise), IA3 included. The only importer of Opacus's training machinery; import it
  explicitly (it loads torch), the rest of this package does not need torch.
- ``distributed``: institution-level DP without a trusted server (distributed Skellam or
  discrete Gaussian noise inside the secure sum), numpy only; its accounting uses
  dp-accounting for RDP-to-epsilon and for the continuous-Gaussian reference.
- ``secure_noise``: the CSPRNG (AES-256-CTR) behind DP-SGD's noise and Poisson sampling.
- ``dp_optimizers``: optimizers for noisy gradients (SGD with momentum, DP-AdamBC); torch.
- ``planner``: before a run, per institution sigma and noise/signal, and the warning when a
  run is predicted to learn nothing.

May import: dp_accounting, numpy, cryptography, opacus and torch (dp_sgd, dp_optimizers
and secure_noise only), ``secagg`` (distributed DP's noise is an encoding of the secure sum:
its codec seam and quantization), ``config``, ``plan_inputs``, ``errors``.
Exports nothing here: import the submodule you need, so torch loads only with ``dp_sgd``.
"""
