"""GradCache through the real engines: 2 workers × mini-batches == 1 worker, the whole batch, the plain loss (loss
and every parameter gradient), for DDP and DeepSpeed ZeRO-2 and ZeRO-3, with negatives gathered across workers;
and dropout replayed exactly between the embedding pass and the backward pass. DeepSpeed on the CPU sets up without
its shared-memory all-reduce op (a JIT build of 30-40 s a run that training never uses)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from syncse_ray.config import TrainConfig
from syncse_ray.train.grad_cache import GradCache
from syncse_ray.train.losses import SimCSELoss
from syncse_ray.train.model import SimCSEModel

ROWS, VIEWS, LENGTH = 8, 3, 6


def _model(dropout: float = 0.0) -> SimCSEModel:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    return SimCSEModel(BertModel(config, add_pooling_layer=False), "cls")


def _batch() -> dict[str, torch.Tensor]:
    """VIEWS views of ROWS rows, view after view (as train.data.tokenize_views lays them out)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (VIEWS, ROWS, LENGTH), generator=g)
    mask = torch.ones_like(ids)
    mask[..., LENGTH - 2:] = torch.randint(0, 2, (VIEWS, ROWS, 2), generator=g)  # some padding
    return {"input_ids": ids, "attention_mask": mask}


def _rows(batch: dict[str, torch.Tensor], lo: int, hi: int) -> dict[str, torch.Tensor]:
    return {k: v[:, lo:hi].reshape(-1, LENGTH) for k, v in batch.items()}


def _reference() -> tuple[float, dict[str, np.ndarray]]:
    model = _model()
    vectors, _ = model(**_rows(_batch(), 0, ROWS))
    loss = SimCSELoss(0.05)(*vectors.view(VIEWS, ROWS, -1))
    loss.backward()
    return loss.item(), {n: p.grad.numpy().copy() for n, p in model.named_parameters()}


def _worker(rank: int, world: int, port: int, backend: str, zero: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DS_ACCELERATOR="cpu", RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK="0")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from syncse_ray.train.engines import build_engine

    n = ROWS // world
    t = TrainConfig(backend=backend, deepspeed={"zero_stage": zero}, batch_size=n, mini_batch_size=1,
                    max_grad_norm=0.0, lr=1e-3)
    engine = build_engine(_model(), t, warmup_steps=0, total_steps=10)
    local = {k: v[:, rank * n:(rank + 1) * n] for k, v in _batch().items()}
    chunks = [_rows(local, i, i + 1) for i in range(n)]
    cache = GradCache(lambda inputs: engine(**inputs)[0], SimCSELoss(0.05))
    loss = cache.loss(chunks, VIEWS)

    def backward(surrogate: torch.Tensor) -> bool:  # the engines' backward, without the optimizer step
        if backend == "ddp":
            (surrogate / engine.accumulation).backward()
            return False
        boundary = engine.engine.is_gradient_accumulation_boundary()
        engine.engine.backward(surrogate)
        if not boundary:
            engine.engine.step()  # only advances DeepSpeed's micro-step counter
        return boundary

    assert cache.replay(backward) == (backend != "ddp")
    if backend == "ddp":
        grads = {n: p.grad.clone() for n, p in engine.module.named_parameters()}
    else:
        from deepspeed.utils import safe_get_full_grad

        grads = {n: safe_get_full_grad(p).clone() for n, p in engine.module.named_parameters()}
    mean_loss = loss.clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        queue.put((mean_loss.item() / world, {n: g.float().numpy() for n, g in grads.items()},
                   hasattr(torch.ops.deepspeed, "inference_all_reduce_")))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("backend,zero", [("ddp", 0), ("deepspeed", 2), ("deepspeed", 3)])
def test_two_workers_with_grad_cache_equal_one_worker_with_the_whole_batch(free_port, backend, zero):
    expected_loss, expected = _reference()
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(2, free_port(), backend, zero, queue), nprocs=2, start_method="spawn")
    loss, grads, shm_op_loaded = queue.get()
    assert not shm_op_loaded  # (the op, once loaded, registers torch.ops.deepspeed.inference_all_reduce_)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert set(grads) == set(expected)
    for name, want in expected.items():
        # float32 sums in another order: tolerance relative to the tensor's scale (gradients reach ~30 at τ 0.05)
        np.testing.assert_allclose(grads[name], want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()),
                                   err_msg=name)
    assert any(np.abs(g).max() > 1e-4 for g in expected.values())


def test_dropout_is_replayed_between_the_two_passes():
    """With dropout on, the replayed forward gives exactly the cached vectors (same masks), so the gradient is
    that of the loss the embedding pass computed; a different mask would not be."""
    model = _model(dropout=0.3)
    model.train()
    batch = _batch()
    chunks = [_rows(batch, i, i + 2) for i in range(0, ROWS, 2)]
    seen: list[torch.Tensor] = []

    def encode(inputs):
        vectors = model(**inputs)[0]
        seen.append(vectors.detach().clone())
        return vectors

    cache = GradCache(encode, SimCSELoss(0.05))
    cache.loss(chunks, VIEWS)
    cache.replay(lambda surrogate: surrogate.backward() or False)
    first, second = seen[:len(chunks)], seen[len(chunks):]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(model(**chunks[0])[0], first[0])  # dropout is really on: a fresh pass differs
