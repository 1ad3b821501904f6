"""The SimCSE loss against a float64 re-computation of its formula, and 2 workers × N against 1 worker × 2N."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from syncse_ray.train.losses import SimCSELoss


def reference_loss(a, p, h, tau, w):
    """−1/N Σ_i log(exp(s_ii) / (Σ_j exp(s_ij) + Σ_j exp(t_ij))), written out in float64 loops."""
    a, p = np.asarray(a, np.float64), np.asarray(p, np.float64)
    h = None if h is None else np.asarray(h, np.float64)

    def cos(x, y):
        return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))

    total = 0.0
    for i in range(len(a)):
        terms = [math.exp(cos(a[i], p[j]) / tau) for j in range(len(p))]
        if h is not None:
            terms += [math.exp(cos(a[i], h[j]) / tau + (w if i == j else 0.0)) for j in range(len(h))]
        total -= math.log(math.exp(cos(a[i], p[i]) / tau) / sum(terms))
    return total / len(a)


@pytest.mark.parametrize("with_hard_negatives,weight", [(True, 0.0), (True, 1.3), (True, -0.7), (False, 0.0)])
def test_loss_matches_float64_formula(with_hard_negatives, weight):
    g = torch.Generator().manual_seed(7)
    a, p, h = (torch.randn(6, 16, generator=g) for _ in range(3))
    loss = SimCSELoss(temperature=0.05, hard_negative_weight=weight)(a, p, h if with_hard_negatives else None)
    expected = reference_loss(a, p, h if with_hard_negatives else None, 0.05, weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_hard_negative_weight_changes_the_loss():
    g = torch.Generator().manual_seed(3)
    a, p, h = (torch.randn(4, 8, generator=g) for _ in range(3))
    assert SimCSELoss(0.05, 1.0)(a, p, h).item() > SimCSELoss(0.05, 0.0)(a, p, h).item()


def _batch(n_total: int, dim: int = 12):
    g = torch.Generator().manual_seed(11)
    encoder = torch.nn.Linear(dim, dim)
    with torch.no_grad():
        encoder.weight.copy_(torch.randn(dim, dim, generator=g))
        encoder.bias.copy_(torch.randn(dim, generator=g))
    x = [torch.randn(n_total, dim, generator=g) for _ in range(3)]
    return encoder, x


def _worker(rank: int, world: int, port: int, n_total: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    encoder, x = _batch(n_total)
    n = n_total // world
    local = [t[rank * n:(rank + 1) * n] for t in x]
    loss = SimCSELoss(0.05, 0.5)(*(encoder(t) for t in local))
    loss.backward()
    # What DDP / DeepSpeed do: average the loss (for logging) and the gradients over workers.
    grads = [prm.grad.clone() for prm in encoder.parameters()]
    for grad in grads:
        dist.all_reduce(grad)
        grad /= world
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    if rank == 0:
        queue.put((mean_loss.item() / world, [gr.numpy() for gr in grads]))
    dist.barrier()
    dist.destroy_process_group()


def test_two_workers_equal_one_worker_with_the_global_batch(free_port):
    n_total = 8
    encoder, x = _batch(n_total)
    loss = SimCSELoss(0.05, 0.5)(*(encoder(t) for t in x))
    loss.backward()
    expected_grads = [prm.grad.numpy() for prm in encoder.parameters()]

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(2, free_port(), n_total, queue), nprocs=2, start_method="spawn")
    dist_loss, dist_grads = queue.get()

    assert dist_loss == pytest.approx(loss.item(), rel=1e-5)
    for got, want in zip(dist_grads, expected_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_without_gather_two_workers_differ():
    """Guards the test above: with local-only negatives the 2-worker loss is not the global one."""
    encoder, x = _batch(8)
    full = SimCSELoss(0.05, 0.5)(*(encoder(t) for t in x)).item()
    halves = [SimCSELoss(0.05, 0.5, gather=False)(*(encoder(t[i * 4:(i + 1) * 4]) for t in x)).item()
              for i in range(2)]
    assert abs(sum(halves) / 2 - full) > 1e-3
