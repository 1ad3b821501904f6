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

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from syncse_ray.config.train import TrainConfig


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
        mask, decay: false-negative control from a guide's vectors (`GuideMask`, `GaussianDecay`).
    """

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0, gather: bool = True,
                 mask: GuideMask | None = None, decay: GaussianDecay | None = None):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight
        self.gather = gather
        self.mask, self.decay = mask, decay

    @property
    def needs_reference(self) -> bool:
        return self.mask is not None or self.decay is not None

    def _gathered(self, tensor: torch.Tensor | None, grad: bool = True) -> torch.Tensor | None:
        if tensor is None or not (self.gather and dist.is_available() and dist.is_initialized()):
            return tensor
        return all_gather_with_grad(tensor) if grad else all_gather_with_grad(tensor.detach()).detach()

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor, hard_negatives: torch.Tensor | None = None,
                reference: tuple[torch.Tensor, ...] | JudgeScores | None = None) -> torch.Tensor:
        """`reference`, needed by `mask` and `decay`: the guide's vectors for the same views (anchors,
        positives[, hard negatives]), or the judge's scores of each anchor's own pair (`JudgeScores`)."""
        n = anchors.shape[0]
        offset = dist.get_rank() * n if self.gather and dist.is_available() and dist.is_initialized() else 0
        positives, hard_negatives = self._gathered(positives), self._gathered(hard_negatives)
        a = F.normalize(anchors.float(), dim=-1)
        candidates = positives if hard_negatives is None else torch.cat([positives, hard_negatives], dim=0)
        logits = a @ F.normalize(candidates.float(), dim=-1).T / self.temperature
        labels = torch.arange(offset, offset + n, device=anchors.device)
        if self.needs_reference:
            if reference is None:
                raise ValueError("this loss masks or decays negatives by a guide: pass the guide's vectors")
            if isinstance(reference, JudgeScores):
                if hard_negatives is None:
                    raise ValueError("judge scores are a reference for hard negatives: this batch has none")
                rho = reference.matrix(logits.shape[1], labels, positives.shape[0] + labels)
            else:
                ref_a, *ref_c = reference
                ref_c = [self._gathered(r, grad=False) for r in ref_c]
                rho = F.normalize(ref_a.float(), dim=-1) @ F.normalize(torch.cat(ref_c).float(), dim=-1).T
            if self.decay is not None:  # on the cosine logits, before any hard-negative weight (as GCSE)
                own = None if hard_negatives is None else positives.shape[0] + labels
                logits = logits - self.decay.lowering(logits.detach(), rho / self.temperature, labels, own)
        if hard_negatives is not None and self.hard_negative_weight != 0.0:
            own_hard_negative = positives.shape[0] + labels  # column of anchor i's hard negative
            bonus = torch.zeros_like(logits)
            bonus[torch.arange(n, device=logits.device), own_hard_negative] = self.hard_negative_weight
            logits = logits + bonus
        if self.mask is not None:
            logits = logits.masked_fill(self.mask.removed(rho, labels), float("-inf"))
        return F.cross_entropy(logits, labels)


@dataclass
class JudgeScores:
    """A reference without a model: the synthesis judge's cosines of each local anchor's own positive and hard
    negative (the data's pos_score / neg_score, [n] each; NaN where the judge gave none). As ρ it fills only
    those two entries of each row; every other candidate has no reference (NaN), so `GuideMask` never removes it
    and `GaussianDecay` leaves it as it is."""

    positive: torch.Tensor
    negative: torch.Tensor

    def matrix(self, columns: int, labels: torch.Tensor, own_negative: torch.Tensor) -> torch.Tensor:
        """ρ, [n, columns]: ρ[i, label_i] = positive_i, ρ[i, own_negative_i] = negative_i, NaN elsewhere."""
        n = labels.shape[0]
        rows = torch.arange(n, device=labels.device)
        rho = torch.full((n, columns), float("nan"), device=labels.device)
        rho[rows, labels] = self.positive.to(rho)
        rho[rows, own_negative] = self.negative.to(rho)
        return rho


class GuideMask(nn.Module):
    """False-negative masking by a guide encoder (MultiCSR: φ ≈ 0.95; GISTEmbed: ratio 1): with ρ the guide's
    cosine, candidate j ≠ label leaves anchor i's softmax when ρ_ij > threshold or ρ_ij > ratio · ρ_i,label
    (an unknown ρ, NaN, removes nothing)."""

    def __init__(self, threshold: float | None = 0.95, ratio: float | None = None):
        super().__init__()
        self.threshold, self.ratio = threshold, ratio

    def removed(self, rho: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(rho.shape[0], device=rho.device)
        out = torch.zeros_like(rho, dtype=torch.bool)
        if self.threshold is not None:
            out |= rho > self.threshold
        if self.ratio is not None:
            out |= rho > self.ratio * rho[rows, labels].unsqueeze(1)
        out[rows, labels] = False
        return out


class GaussianDecay(nn.Module):
    """GCSE's Gaussian-decayed logits. With s_ij = cos(h_i, c_j)/τ the model's logit and r_ij = ρ_ij/τ the
    reference's, a negative the model does not score above the reference (s_ij ≤ r_ij) is lowered by

        δ_ij = s_ij · exp(−(s_ij − r_ij)² / (2σ²))          (0 when s_ij > r_ij; detached)

    so a negative the model and the reference agree on (likely a paraphrase: a false negative) nearly leaves
    the softmax, while one the model already scores far below the reference keeps its weight. `scope`:
    "hard_negative" (GCSE: each anchor's own hard negative) or "all" negatives. σ is in logit units (GCSE:
    0.17 for BERT, 8.58 for RoBERTa, at τ = 0.05). A logit without a reference (NaN) is left as it is."""

    def __init__(self, sigma: float, scope: str = "hard_negative"):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma, self.scope = sigma, scope

    def lowering(self, logits: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor,
                 own_hard_negative: torch.Tensor | None) -> torch.Tensor:
        """δ (the module docstring) for every logit in scope, 0 elsewhere; detached. `own_hard_negative`: the
        column of each anchor's hard negative (None: there are none)."""
        diff = logits - reference
        delta = torch.where(diff > 0, torch.zeros_like(logits),
                            logits * torch.exp(-diff.square() / (2 * self.sigma ** 2)))
        rows = torch.arange(logits.shape[0], device=logits.device)
        scope = torch.zeros_like(logits, dtype=torch.bool)
        if self.scope == "all":
            scope[:] = True
        elif own_hard_negative is not None:
            scope[rows, own_hard_negative] = True
        scope[rows, labels] = False
        scope &= ~torch.isnan(reference)
        return torch.where(scope, delta, torch.zeros_like(delta)).detach()


class MatryoshkaLoss(nn.Module):
    """Σ_k w_k · L(h[:, :d_k]) over prefix dimensions d_k of every view (Matryoshka representation learning),
    so a vector truncated to d_k and re-normalised is itself a trained embedding."""

    def __init__(self, loss: nn.Module, dims: list[int], weights: list[float] | None = None):
        super().__init__()
        self.loss, self.dims = loss, list(dims)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.dims)

    def forward(self, *views: torch.Tensor | None, reference=None) -> torch.Tensor:
        total = 0.0
        for d, w in zip(self.dims, self.weights):
            total = total + w * self.loss(*(v[:, :d] if v is not None else None for v in views),
                                          reference=reference)
        return total


def build_loss(train: TrainConfig) -> nn.Module:
    """The loss `train` (a TrainConfig) asks for: SimCSE, with guide masking / Gaussian decay, summed over
    Matryoshka prefixes."""
    fn = train.false_negatives
    mask = (GuideMask(fn.mask_threshold, fn.mask_ratio)
            if fn.mask_threshold is not None or fn.mask_ratio is not None else None)
    decay = GaussianDecay(fn.decay_sigma, fn.decay_scope) if fn.decay_sigma is not None else None
    loss = SimCSELoss(train.temperature, train.hard_negative_weight, mask=mask, decay=decay)
    return MatryoshkaLoss(loss, train.matryoshka_dims, train.matryoshka_weights) if train.matryoshka_dims else loss
