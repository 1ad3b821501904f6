"""GradCache (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"): the
contrastive loss of a large batch with the activation memory of a mini-batch. Pure PyTorch (no Ray).

1. **embed**: every mini-batch forward without a graph, its RNG state saved first -> the batch's vectors v;
2. **loss**: the loss of the whole batch (gathered over workers inside the loss) from v as leaves; its backward
   gives ∂L/∂v for this worker's vectors, cross-worker terms included (`all_gather_with_grad` sends each
   worker its share);
3. **replay**: each mini-batch forward again with its saved RNG state (the same dropout masks), then the
   backward of Σ v · ∂L/∂v, which by the chain rule adds exactly that mini-batch's part of ∂L/∂θ to the
   parameters' gradients. The engine treats the mini-batches as `micro_steps` backward passes of one step
   (DDP all-reduces, DeepSpeed reduces and partitions as for gradient accumulation) and steps once.

Each backward pass runs one mini-batch's graph, once, so DeepSpeed ZeRO never sees a parameter's gradient twice
in one pass (the failure of caching losses that run every mini-batch inside a single backward).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class RngState:
    """The CPU and CUDA generator states at one point, to replay dropout exactly."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


class GradCache:
    """One optimizer step's worth of mini-batches (module docstring).

        cache = GradCache(encode, loss_fn)
        loss = cache.loss(chunks, views=3)        # steps 1-2; check it is finite before going on
        stepped = cache.replay(backward)          # step 3; backward = the engine's backward_and_step

    `encode(inputs)` returns the vectors of one tokenized mini-batch, [views · m, d] (views column after column,
    as `train.data.tokenize_views` lays them out); `loss_fn(*views, reference=...)` is the batch loss."""

    def __init__(self, encode: Callable[[dict], torch.Tensor], loss_fn: Callable[..., torch.Tensor]):
        self.encode, self.loss_fn, self.views = encode, loss_fn, 1
        self._chunks: list[dict] = []
        self._states: list[RngState] = []
        self._grads: list[torch.Tensor] = []

    def _split(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors.view(self.views, -1, vectors.shape[-1])  # [views, m, d]

    def loss(self, chunks: list[dict], views: int,
             reference: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """`chunks`: the tokenized mini-batches, each with `views` views (anchor, positive[, hard negative])."""
        self._chunks, self._states, cached, self.views = chunks, [], [], views
        for inputs in chunks:
            self._states.append(RngState())
            with torch.no_grad():
                cached.append(self._split(self.encode(inputs)))
        reps = torch.cat(cached, dim=1).detach().requires_grad_()
        loss = self.loss_fn(*reps, reference=reference)
        loss.backward()
        self._grads = list(reps.grad.split([c.shape[1] for c in cached], dim=1))
        return loss.detach()

    def replay(self, backward: Callable[[torch.Tensor], bool]) -> bool:
        """Backward every mini-batch through `backward` (it divides by the micro-steps, as for accumulation:
        the surrogate is scaled up to match); returns whether the last one completed an optimizer step."""
        stepped = False
        after = RngState()  # the stream continues from here once the replay is done, as without GradCache
        for inputs, state, grad in zip(self._chunks, self._states, self._grads):
            state.restore()
            vectors = self._split(self.encode(inputs))
            surrogate = (vectors.float() * grad.float()).sum() * len(self._chunks)
            stepped = backward(surrogate)
        after.restore()
        self._chunks, self._states, self._grads = [], [], []
        return stepped
