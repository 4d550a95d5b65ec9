"""Sample-level differential privacy for each institution.

- ``events``: what a round released, as immutable JSON-able data.
- ``accounting``: events to (epsilon, delta) by dp-accounting PLD (of record), RDP and Opacus
  PRV (cross-checks); noise calibration; default delta. The only importer of dp_accounting.
- ``ledger``: one institution's ledger across rounds and resumed runs; budget checks.
- ``dp_sgd``: Opacus DP-SGD on the adapter parameters (Poisson sampling, per-example clipping,
  Gaussian noise), IA3 included. The only importer of Opacus's training machinery; import it
  explicitly (it loads torch), the rest of this package does not need torch.
- ``secure_noise``: the CSPRNG (AES-256-CTR) behind DP-SGD's noise and Poisson sampling.
- ``dp_optimizers``: optimizers for noisy gradients (SGD with momentum, DP-AdamBC); torch.
- ``planner``: before a run, per institution sigma and noise/signal, and the warning when a
  run is predicted to learn nothing.
"""
