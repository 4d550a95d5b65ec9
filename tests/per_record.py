"""The reference DP-SGD's per-sample gradients are checked against (tests only)."""

from __future__ import annotations

from securefed.model.training import batch_loss


def one_backward_per_record(bundle, tensors, params, loss_fn=batch_loss) -> list[list]:
    """Each record's gradient of ``params``, from a plain backward of ``loss_fn`` on that
    record alone."""
    grads = []
    for i in range(len(tensors[0])):
        bundle.model.zero_grad(set_to_none=True)
        loss_fn(bundle, [t[i : i + 1] for t in tensors]).backward()
        grads.append([p.grad.clone() for p in params])
    bundle.model.zero_grad(set_to_none=True)
    return grads
