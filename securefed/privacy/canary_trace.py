"""What each carrier of gradient canaries saw at every step: the trace the audit scores.

The sample-level epsilon is a claim about one institution's DP-SGD: the accountant composes
its steps, each a Poisson-subsampled Gaussian mechanism whose output is the privatized
gradient (clipped per-sample gradients summed, N(0, (sigma C)^2) added, divided by the
expected batch B) that the optimizer then reads. So the audit observes that output, at every
step, at the coordinates of the canaries the institution carries (included or not):

- ``released``: the gradient the optimizer read (``p.grad`` after Opacus's noise and scaling;
  without DP the batch-mean gradient with the canaries in), times ``divisor`` (B under DP,
  the batch's rows without) to the scale of a sum;
- ``records``: the part of that sum the task's records make (each clipped to C under DP).

Their difference is what the canaries and the noise did. Subtracting ``records`` is the
auditor's right: DP's adversary knows every record but the one protected, and which other
records a step sampled is drawn independently of any canary (Poisson sampling), so it
reveals nothing about one. The one-run bound (Steinke, Nasr and Jagielski 2023) allows any
guess computed from the mechanism's output and from what is fixed independently of the
canaries' coins; the records' clipped gradients at the model each step started from are
such a function. What the optimizer does with the privatized gradient is post-processing
and outside this trace: the audit tests the noise, the clipping and the sampling the ledger
claims, not the optimizer.

No deployment publishes this trace (the server sees only the masked sum of updates): it is
written by a simulation audit run, to ``canary_trace.safetensors``, sealed with the run, and
``securefed audit --verify`` recomputes every score from it. numpy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from securefed.privacy.canaries import CanaryPlan

_FIELDS = ("released", "records", "divisor")


class CanaryTrace:
    """Per carrier, one row per step: ``released`` [steps, carried] float32, ``records``
    [steps, carried] float64, ``divisor`` [steps] float64 (module docstring); columns in the
    order of ``plan.carried_by(institution)``."""

    def __init__(self, plan: CanaryPlan) -> None:
        if plan.kind != "gradient":
            raise ValueError(f"a canary trace holds gradient canaries, this plan has {plan.kind!r}")
        self.plan = plan
        self._rows: dict[int, list[tuple[np.ndarray, np.ndarray, float]]] = {
            c: [] for c in plan.institutions
        }

    def add_step(
        self, institution: int, released: np.ndarray, records: np.ndarray, divisor: float
    ) -> None:
        """One step of ``institution``: its released and records' values at its canaries."""
        carried = len(self.plan.carried_by(institution))
        if np.shape(released) != (carried,) or np.shape(records) != (carried,):
            raise ValueError(
                f"institution {institution} carries {carried} canaries, got values of shape "
                f"{np.shape(released)} and {np.shape(records)}"
            )
        row = (np.asarray(released, np.float32), np.asarray(records, np.float64), float(divisor))
        self._rows[institution].append(row)

    def steps(self, institution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(released, records, divisor) of ``institution``'s steps, as stacked arrays."""
        carried = len(self.plan.carried_by(institution))
        rows = self._rows[institution]
        released = np.array([r[0] for r in rows], np.float32).reshape(len(rows), carried)
        records = np.array([r[1] for r in rows], np.float64).reshape(len(rows), carried)
        return released, records, np.array([r[2] for r in rows], np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every carrier's arrays, named ``<field>/<institution>`` (what the run writes)."""
        out = {}
        for institution in self.plan.institutions:
            for name, values in zip(_FIELDS, self.steps(institution), strict=True):
                out[f"{name}/{institution}"] = values
        return out

    @classmethod
    def from_arrays(cls, plan: CanaryPlan, arrays: dict[str, np.ndarray]) -> CanaryTrace:
        """The trace ``arrays`` (as ``arrays()`` names them) hold; ValueError when they do not
        fit ``plan`` (a carrier missing, a column count or step count that disagrees)."""
        trace = cls(plan)
        expected = {f"{name}/{c}" for name in _FIELDS for c in plan.institutions}
        if set(arrays) != expected:
            raise ValueError(f"trace arrays {sorted(arrays)}, expected {sorted(expected)}")
        for c in plan.institutions:
            released, records = arrays[f"released/{c}"], arrays[f"records/{c}"]
            divisor = arrays[f"divisor/{c}"]
            if released.ndim != 2 or records.shape != released.shape:
                raise ValueError(f"institution {c}: released and records differ in shape")
            if divisor.shape != (len(released),):
                raise ValueError(f"institution {c}: {len(divisor)} divisors, {len(released)} steps")
            for row in range(len(released)):
                trace.add_step(c, released[row], records[row], divisor[row])
        return trace


class CarriedCanaries(NamedTuple):
    """What a carrier's local training takes: the plan, which institution it is, and the
    trace its steps are recorded into (None: not recorded, as in unit tests)."""

    plan: CanaryPlan
    institution: int
    trace: CanaryTrace | None = None
