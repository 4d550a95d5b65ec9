"""The server's optimizer: how the global adapter moves given a round's mean delta.

The server applies it to the *unmasked mean delta* (the secure sum over the total weight,
``aggregation.release``): a function of what the server learns anyway, so it is
post-processing. It changes neither what secure aggregation reveals nor any privacy
guarantee, and no ledger records it. The pseudo-gradient is ``delta`` (new - global), and
``eta = training.server_lr``; following Reddi et al., "Adaptive Federated Optimization"
(ICLR 2021), Algorithm 2::

    fedavg      x += eta * delta
    fedavgm     v = momentum * v + delta;          x += eta * v       (Hsu et al. 2019)
    fedadagrad  m = b1 m + (1 - b1) delta;  v = v + delta^2
    fedyogi     m = ...;  v = v - (1 - b2) delta^2 sign(v - delta^2)
    fedadam     m = ...;  v = b2 v + (1 - b2) delta^2
                x += eta * m / (sqrt(v) + tau)      (the three adaptive ones; v starts at tau^2)

Written in numpy rather than with torch.optim: Algorithm 2 has no bias correction and adds
tau outside the square root to a second moment that starts at tau^2, which torch.optim.Adam
does not do, and the round loop that calls this stays torch-free (the Flower server runs it
without loading torch). tests/test_server_optimizer.py checks fedavgm against torch's SGD
with momentum and fedadagrad (beta1 = 0) against torch's Adagrad, where they coincide.

The state (``v``, ``m``) is part of each round's commit (``RunFolder.save_server_state``),
so a resumed run takes the very same steps as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from securefed.config_training import ServerOptimizerConfig

ServerState = dict[str, np.ndarray]  # name -> (d,) float64; {} for fedavg (stateless)


def state_names(cfg: ServerOptimizerConfig) -> tuple[str, ...]:
    """The arrays ``cfg``'s optimizer carries from round to round."""
    return {"fedavg": (), "fedavgm": ("v",)}.get(cfg.name, ("m", "v"))


def initial_state(cfg: ServerOptimizerConfig, dimension: int) -> ServerState:
    """The state before round 0: zero momentum; the adaptive second moment at tau^2."""
    state = {name: np.zeros(dimension, dtype=np.float64) for name in state_names(cfg)}
    if cfg.name in ("fedadam", "fedyogi", "fedadagrad"):
        state["v"] += cfg.tau**2
    return state


def server_step(
    cfg: ServerOptimizerConfig,
    server_lr: float,
    global_vector: np.ndarray,
    mean_delta: np.ndarray,
    state: ServerState,
) -> tuple[np.ndarray, ServerState]:
    """The new global adapter (float32) and the new state; ``state`` is not modified."""
    if cfg.name == "fedavg":  # in float32, as the round loop always took it
        return (global_vector + server_lr * mean_delta).astype(np.float32), {}
    delta = mean_delta.astype(np.float64)  # (d,)
    x = global_vector.astype(np.float64)  # (d,)
    if cfg.name == "fedavgm":
        v = cfg.momentum * state["v"] + delta
        return (x + server_lr * v).astype(np.float32), {"v": v}
    m = cfg.beta1 * state["m"] + (1.0 - cfg.beta1) * delta
    square = delta * delta
    if cfg.name == "fedadagrad":
        v = state["v"] + square
    elif cfg.name == "fedyogi":
        v = state["v"] - (1.0 - cfg.beta2) * square * np.sign(state["v"] - square)
    else:  # fedadam
        v = cfg.beta2 * state["v"] + (1.0 - cfg.beta2) * square
    x = x + server_lr * m / (np.sqrt(v) + cfg.tau)
    return x.astype(np.float32), {"m": m, "v": v}
