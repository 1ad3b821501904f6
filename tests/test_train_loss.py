"""The SimCSE loss against a float64 re-computation of its formula, and 2 workers × N against 1 worker × 2N."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from syncse_ray.train.losses import GaussianDecay, GuideMask, JudgeScores, MatryoshkaLoss, SimCSELoss


def _cos(x, y):
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def reference_loss(a, p, h, tau, w, guide=None, phi=None, ratio=None, sigma=None, scope="hard_negative",
                   judge=None):
    """−1/N Σ_i log(exp(s_ii) / (Σ_j exp(s_ij) + Σ_j exp(t_ij))), written out in float64 loops; with `guide`
    (its vectors for a, p, h): candidates with guide cosine ρ > phi or > ratio · ρ(a_i, p_i) dropped, and
    GCSE's decay s − s·exp(−(s − ρ/τ)²/2σ²) where s ≤ ρ/τ on the own hard negative (scope "all": every
    negative). With `judge` = (pos, neg) scores instead of a guide: ρ is known for (a_i, p_i) and (a_i, h_i)
    alone, and only the own hard negative can be dropped or decayed."""
    a, p = np.asarray(a, np.float64), np.asarray(p, np.float64)
    h = None if h is None else np.asarray(h, np.float64)
    cands = [("p", j, p[j]) for j in range(len(p))] + ([("h", j, h[j]) for j in range(len(h))] if h is not None
                                                        else [])
    g = None if guide is None else [np.asarray(x, np.float64) for x in guide]
    total = 0.0
    for i in range(len(a)):
        terms, label = [], None
        for kind, j, c in cands:
            logit = _cos(a[i], c) / tau + (w if kind == "h" and i == j else 0.0)
            is_label = kind == "p" and j == i
            if judge is not None and kind == "h" and j == i and not math.isnan(judge[1][i]):
                rho, rho_pos = float(judge[1][i]), float(judge[0][i])
                if (phi is not None and rho > phi) or (ratio is not None and rho > ratio * rho_pos):
                    continue
                s = _cos(a[i], c) / tau
                if sigma is not None and s <= rho / tau:
                    logit -= s * math.exp(-((s - rho / tau) ** 2) / (2 * sigma ** 2))
            if g is not None:
                rho = _cos(g[0][i], (g[1] if kind == "p" else g[2])[j])
                if not is_label and ((phi is not None and rho > phi) or
                                     (ratio is not None and rho > ratio * _cos(g[0][i], g[1][i]))):
                    continue
                in_scope = not is_label and (scope == "all" or (kind == "h" and j == i))
                s = _cos(a[i], c) / tau
                if sigma is not None and in_scope and s <= rho / tau:
                    logit -= s * math.exp(-((s - rho / tau) ** 2) / (2 * sigma ** 2))
            terms.append(math.exp(logit))
            if is_label:
                label = math.exp(logit)
        total -= math.log(label / sum(terms))
    return total / len(a)


@pytest.mark.parametrize("with_hard_negatives,weight", [(True, 0.0), (True, 1.3), (True, -0.7), (False, 0.0)])
def test_loss_matches_float64_formula(with_hard_negatives, weight):
    g = torch.Generator().manual_seed(7)
    a, p, h = (torch.randn(6, 16, generator=g) for _ in range(3))
    loss = SimCSELoss(temperature=0.05, hard_negative_weight=weight)(a, p, h if with_hard_negatives else None)
    expected = reference_loss(a, p, h if with_hard_negatives else None, 0.05, weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("phi,ratio,sigma,scope", [
    (0.3, None, None, "hard_negative"), (None, 0.9, None, "hard_negative"), (0.5, 1.0, None, "hard_negative"),
    (None, None, 2.0, "hard_negative"), (None, None, 5.0, "all"), (0.4, None, 3.0, "all"),
])
def test_false_negative_control_matches_float64_formula(phi, ratio, sigma, scope):
    g = torch.Generator().manual_seed(5)
    a, p, h = (torch.randn(6, 16, generator=g) for _ in range(3))
    # a guide that roughly agrees with the model: the same vectors plus noise
    guide = tuple(x + 0.8 * torch.randn(x.shape, generator=g) for x in (a, p, h))
    loss_fn = SimCSELoss(0.05, 0.4, mask=GuideMask(phi, ratio) if phi is not None or ratio is not None else None,
                         decay=GaussianDecay(sigma, scope) if sigma else None)
    loss = loss_fn(a, p, h, reference=guide)
    expected = reference_loss(a, p, h, 0.05, 0.4, guide=guide, phi=phi, ratio=ratio, sigma=sigma, scope=scope)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() != pytest.approx(SimCSELoss(0.05, 0.4)(a, p, h).item(), rel=1e-3)  # it did act


def _judge_scores(a, p, h, g):
    """Judge cosines of each row's own pair: the model's own cosines plus noise, one row unscored (NaN)."""
    pos = torch.nn.functional.cosine_similarity(a, p) + 0.1 * torch.randn(a.shape[0], generator=g)
    neg = torch.nn.functional.cosine_similarity(a, h) + 0.1 * torch.randn(a.shape[0], generator=g)
    pos[1], neg[1] = float("nan"), float("nan")
    return pos, neg


@pytest.mark.parametrize("phi,ratio,sigma", [(0.0, None, None), (None, 0.5, None), (None, None, 4.0),
                                             (0.1, 1.0, 3.0)])
def test_judge_scores_as_reference_match_float64_formula(phi, ratio, sigma):
    g = torch.Generator().manual_seed(21)
    a, p = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    h = 0.7 * a + 0.5 * torch.randn(6, 16, generator=g)  # hard negatives near their anchors: some get masked
    pos, neg = _judge_scores(a, p, h, g)
    loss_fn = SimCSELoss(0.05, 0.4, mask=GuideMask(phi, ratio) if phi is not None or ratio is not None else None,
                         decay=GaussianDecay(sigma) if sigma else None)
    loss = loss_fn(a, p, h, reference=JudgeScores(pos, neg))
    expected = reference_loss(a, p, h, 0.05, 0.4, phi=phi, ratio=ratio, sigma=sigma,
                              judge=(pos.double().numpy(), neg.double().numpy()))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() != pytest.approx(SimCSELoss(0.05, 0.4)(a, p, h).item(), rel=1e-3)  # it did act


def test_judge_scores_take_a_copied_anchor_out_of_the_loss():
    """What the real DeepSpeed run (test_train_run.py) tells an honoured judge-score reference from an ignored one
    by: with each hard negative a near copy of its anchor, the copies dominate the plain loss; scored 1.0 by the
    judge, they leave the softmax (even rows: the positive scored 0.9, mask_ratio 1.0) or their logit falls to
    about 0 (odd rows: the positive scored 1.0 too, Gaussian decay), so the loss is the batch's without them."""
    g = torch.Generator().manual_seed(4)
    a = torch.randn(8, 16, generator=g)
    p = a + 0.9 * torch.randn(8, 16, generator=g)
    h = a + 0.1 * torch.randn(8, 16, generator=g)  # the anchor again, through another dropout mask
    judge = JudgeScores(torch.tensor([0.9, 1.0] * 4), torch.ones(8))
    honoured = SimCSELoss(0.05, mask=GuideMask(None, 1.0), decay=GaussianDecay(4.0))(a, p, h, reference=judge)
    logits = F.normalize(a, dim=-1) @ F.normalize(torch.cat([p, h]), dim=-1).T / 0.05
    logits[torch.arange(8), 8 + torch.arange(8)] = float("-inf")
    without_copies = F.cross_entropy(logits, torch.arange(8)).item()
    assert honoured.item() == pytest.approx(without_copies, rel=1e-4)
    assert SimCSELoss(0.05)(a, p, h).item() > without_copies + 2.0
    masked_only = SimCSELoss(0.05, mask=GuideMask(None, 1.0))(a, p, h, reference=judge).item()
    assert masked_only > without_copies + 1.0  # the odd rows' copies: only the decay takes them out


def test_judge_scores_leave_in_batch_negatives_and_unscored_rows_alone():
    labels = torch.arange(3)
    rho = JudgeScores(torch.tensor([0.9, float("nan"), 0.5]), torch.tensor([0.95, 0.99, 0.2])).matrix(6, labels,
                                                                                                   labels + 3)
    removed = GuideMask(threshold=0.1).removed(rho, labels)
    # only the own hard negatives above the threshold: rows 0 (0.95), 1 (0.99: its negative was scored), 2 (0.2)
    assert removed.nonzero().tolist() == [[0, 3], [1, 4], [2, 5]]
    assert not GuideMask(threshold=None, ratio=1.0).removed(rho, labels)[1].any()  # no positive score: no ratio
    assert GuideMask(threshold=None, ratio=1.0).removed(rho, labels).nonzero().tolist() == [[0, 3]]


def test_matryoshka_is_the_weighted_sum_over_prefixes():
    g = torch.Generator().manual_seed(9)
    a, p, h = (torch.randn(5, 12, generator=g) for _ in range(3))
    loss = MatryoshkaLoss(SimCSELoss(0.05), [12, 6, 3], [1.0, 0.5, 0.25])(a, p, h)
    expected = sum(w * reference_loss(a[:, :d], p[:, :d], h[:, :d], 0.05, 0.0)
                   for d, w in ((12, 1.0), (6, 0.5), (3, 0.25)))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_guide_mask_never_removes_the_positive():
    a = torch.eye(3)
    removed = GuideMask(threshold=-2.0).removed(a @ a.T, torch.arange(3))  # every candidate above threshold
    assert not removed.diagonal().any() and removed.sum() == 6


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


def _loss(options: str) -> torch.nn.Module:
    if options == "guide":
        return SimCSELoss(0.05, 0.5, mask=GuideMask(0.6, 1.0), decay=GaussianDecay(4.0, "all"))
    if options == "matryoshka":
        return MatryoshkaLoss(SimCSELoss(0.05, 0.5, mask=GuideMask(0.6)), [12, 4], [1.0, 0.5])
    if options == "judge":
        return SimCSELoss(0.05, 0.5, mask=GuideMask(0.2), decay=GaussianDecay(4.0))
    return SimCSELoss(0.05, 0.5)


def _guide(x):
    g = torch.Generator().manual_seed(13)
    return tuple(t + 0.5 * torch.randn(t.shape, generator=g) for t in x)


def _reference(options, x, rows=slice(None)):
    """The loss's reference for rows `rows` of the batch: guide vectors, or judge scores of each row's pair."""
    if options == "plain":
        return None
    if options == "judge":
        g = torch.Generator().manual_seed(17)
        pos, neg = torch.rand(x[0].shape[0], generator=g), torch.rand(x[0].shape[0], generator=g)
        return JudgeScores(pos[rows], neg[rows])
    return tuple(t[rows] for t in _guide(x))


def _worker(rank: int, world: int, port: int, n_total: int, queue, options: str = "plain") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    encoder, x = _batch(n_total)
    n = n_total // world
    local = [t[rank * n:(rank + 1) * n] for t in x]
    reference = _reference(options, x, slice(rank * n, (rank + 1) * n))
    loss = _loss(options)(*(encoder(t) for t in local), reference=reference)
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


@pytest.mark.slow  # two gloo processes a case (~10 s each)
@pytest.mark.parametrize("options", ["plain", "guide", "matryoshka", "judge"])
def test_two_workers_equal_one_worker_with_the_global_batch(free_port, options):
    n_total = 8
    encoder, x = _batch(n_total)
    loss = _loss(options)(*(encoder(t) for t in x), reference=_reference(options, x))
    loss.backward()
    expected_grads = [prm.grad.numpy() for prm in encoder.parameters()]

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(2, free_port(), n_total, queue, options), nprocs=2, start_method="spawn")
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
