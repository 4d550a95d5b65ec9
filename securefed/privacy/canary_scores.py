"""Scores of gradient (Dirac) canaries from every released round of a run.

The server sees the global adapter after every round, so the audit may too. Canary i is the
coordinate k_i of one adapter matrix with a sign s_i (``canaries.canary_coordinates``); an
included one, when sampled, pushes that coordinate by C against s_i. What else moves the
coordinate is the noise the score must see through:

- the DP noise: isotropic, the same in every round (so rounds count equally, as below);
- the records' own gradients. Per coordinate they are far larger than one canary's C, but in
  a LoRA matrix they are nearly of low rank (sum over records of an outer product, with the
  layer's inputs pointing mostly one way): measured on configs/dp.yaml without DP, each
  round's step of the query's B is rank 1 to 99% of its squared norm, and the entries left
  after taking out the top singular component are 17-45x smaller (median) than the step's.
  A canary is one entry, of no rank to speak of.

So each round's step (previous minus new global adapter: descent moves against a gradient)
is taken matrix by matrix, and the records' move is estimated as the rank-1 matrix that best
fits the entries no canary holds (alternating least squares on those entries only: fitted on
every entry, the top component of a small or quiet matrix is a canary's own spike). What is
left at a canary's entry, over the robust scale of what is left at the entries no canary
holds (their median absolute residual, as a normal standard deviation: rounds that moved
more count less, every round on one scale), is its evidence from that round; canary i scores
s_i times that, summed over rounds. Tried on saved runs of configs/dp.yaml and dropped: a
scale per entry (a row's loudness times a column's, fitted to log |residual|) helps without
DP and loses a third of the bound with a tenth of the noise; a rank-2 fit overfits a row's
five free entries. Any function of the released adapters and the (public after the run)
canary design is a valid score for the one-run bound: only the coins stay out of it.

numpy only (LAPACK's SVD in float64), so ``securefed audit --verify`` recomputes the scores
from the checkpoints without torch.
"""

from __future__ import annotations

import numpy as np

from securefed.privacy.canaries import CanaryPlan, canary_coordinates

FIT_ITERATIONS = 50  # alternating least squares sweeps of each fit (fixed: recomputable)
_NORMAL_MAD = 1.482602218505602  # 1 / Phi^-1(3/4): median |x| x this = std of a normal


def gradient_scores(plan: CanaryPlan, adapters: np.ndarray) -> np.ndarray:
    """[m] scores of gradient canaries from ``adapters`` [rounds + 1, d]: the initial global
    adapter, then the one released after each round (module docstring)."""
    adapters = np.asarray(adapters)
    if adapters.ndim != 2 or adapters.shape[0] < 2:
        raise ValueError(
            f"need the initial and at least one released adapter as rows, got shape "
            f"{adapters.shape}"
        )
    coordinates, signs = canary_coordinates(plan)
    if coordinates.max() >= adapters.shape[1]:
        raise ValueError(
            f"canary coordinates reach {coordinates.max()}, the adapter has {adapters.shape[1]}"
        )
    scores = np.zeros(plan.count)
    for before, after in zip(adapters[:-1], adapters[1:], strict=True):
        step = before.astype(np.float64) - after.astype(np.float64)
        for offset, rows, cols in plan.blocks:
            mine = (coordinates >= offset) & (coordinates < offset + rows * cols)
            held = np.zeros(rows * cols, dtype=bool)
            held[coordinates[mine] - offset] = True
            residual = standardized_residual(step[offset : offset + rows * cols], rows, cols, held)
            scores[mine] += signs[mine] * residual[coordinates[mine] - offset]
    return scores


def standardized_residual(block: np.ndarray, rows: int, cols: int, held: np.ndarray) -> np.ndarray:
    """[rows * cols] the flat ``block`` less the rank-1 matrix fitted to its entries not
    ``held`` by a canary (none for a matrix of one row or column), over the robust scale of
    those entries' residual; zeros where that scale is zero (a matrix that did not move)."""
    matrix = block.reshape(rows, cols)
    free = ~held.reshape(rows, cols)
    if not free.any():
        return np.zeros(rows * cols)
    fitted = np.zeros_like(matrix) if min(rows, cols) == 1 else _rank_one_fit(matrix, free)
    residual = matrix - fitted
    magnitudes = np.abs(residual[free])
    # The median unless most free entries are still (a step of sparse canaries alone: the mean).
    scale = _NORMAL_MAD * float(np.median(magnitudes)) or float(np.mean(magnitudes))
    if scale <= 1e-9 * float(np.max(np.abs(matrix))):  # zero, or float rounding
        return np.zeros(rows * cols)
    return (residual / scale).ravel()


def _rank_one_fit(matrix: np.ndarray, free: np.ndarray) -> np.ndarray:
    """u v^T minimising the squared error over the ``free`` entries of ``matrix``: alternating
    least squares from the top singular pair of the matrix with the other entries zeroed.
    Written here: numpy's SVD fits every entry, and no dependency fits a masked one."""
    observed = np.where(free, matrix, 0.0)
    u, s, vt = np.linalg.svd(observed, full_matrices=False)
    left, right = u[:, 0] * s[0], vt[0]
    weight = free.astype(np.float64)
    for _ in range(FIT_ITERATIONS):
        left = _least_squares(observed @ right, weight @ right**2)
        right = _least_squares(observed.T @ left, weight.T @ left**2)
    return np.outer(left, right)


def _least_squares(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where no free entry informs a row (or column)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)
