"""The SimCSE contrastive loss and the autograd-aware all-gather that makes its negatives span the global batch.

Pure PyTorch (no Ray). For a batch of N anchors h_i with positives h_i⁺ and (optionally) hard negatives h_i⁻,
and temperature τ:

    s_ij  = cos(h_i, h_j⁺) / τ                         (N × N)
    t_ij  = cos(h_i, h_j⁻) / τ + w · [i = j]           (N × N, w = hard_negative_weight, a *log* weight)
    loss  = −1/N Σ_i log( exp(s_ii) / (Σ_j exp(s_ij) + Σ_j exp(t_ij)) )

i.e. cross-entropy over the N × 2N logits [s | t] with label i. w = 0 leaves every hard negative at weight
exp(0) = 1; w > 0 multiplies the anchor's own hard negative's term by exp(w). Without hard negatives the logits
are s alone (unsupervised SimCSE: h_i and h_i⁺ are two dropout views of the same sentence).

Across W workers, each holding N anchors, positives and hard negatives are all-gathered (W·N candidates each)
and worker r's label for its local anchor i is r·N + i. Each worker's loss is the mean over its own N anchors;
data-parallel gradient averaging (DDP, DeepSpeed) then gives exactly the gradient of the mean over all W·N
anchors — the loss of one worker holding the whole global batch — because `all_gather_with_grad` sends the
gradient that every worker's loss puts on a gathered row back to the worker that produced it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gathered gradient over workers and keeps this worker's rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()  # all_reduce works in place; leave autograd's buffer alone
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` ([n, d], the same n on every worker) over all workers in rank order; gradients flow
    back to the worker that produced each row. The identity when torch.distributed is not initialised."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


class SimCSELoss(nn.Module):
    """Supervised / unsupervised SimCSE loss (InfoNCE over cosine similarities, see the module docstring).

    Args:
        temperature: τ; the paper uses 0.05.
        hard_negative_weight: w, a log weight added to each anchor's own hard negative logit (0: weight 1).
        gather: all-gather positives and hard negatives over torch.distributed workers (global negatives).
    """

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0, gather: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight
        self.gather = gather

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor,
                hard_negatives: torch.Tensor | None = None) -> torch.Tensor:
        n = anchors.shape[0]
        offset = 0
        if self.gather and dist.is_available() and dist.is_initialized():
            offset = dist.get_rank() * n
            positives = all_gather_with_grad(positives)
            if hard_negatives is not None:
                hard_negatives = all_gather_with_grad(hard_negatives)
        a = F.normalize(anchors.float(), dim=-1)
        candidates = positives if hard_negatives is None else torch.cat([positives, hard_negatives], dim=0)
        logits = a @ F.normalize(candidates.float(), dim=-1).T / self.temperature
        labels = torch.arange(offset, offset + n, device=anchors.device)
        if hard_negatives is not None and self.hard_negative_weight != 0.0:
            own_hard_negative = positives.shape[0] + labels  # column of anchor i's hard negative
            bonus = torch.zeros_like(logits)
            bonus[torch.arange(n, device=logits.device), own_hard_negative] = self.hard_negative_weight
            logits = logits + bonus
        return F.cross_entropy(logits, labels)
