"""The CUDA code paths of the OT engine against the CPU fp64 reference.

Skipped without a GPU. On a GPU machine without mmseg installed, run them with
``python tools/run_ot_tests.py tests/ot`` (imports ``mmseg_saot.ot`` alone).
"""
import math
import warnings

import pytest
import torch

from mmseg_saot.ot import (block_sparse_sinkhorn, cosine_cost, knn_transfer, nn_transfer,
                           sinkhorn, sinkhorn_online, transfer_labels)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
CUDA = torch.device('cuda')


def _features(n=300, m=200, dim=64, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(8, dim, generator=gen, dtype=dtype)
    x = centers[torch.randint(0, 8, (n,), generator=gen)] + 0.5 * torch.randn(
        n, dim, generator=gen, dtype=dtype)
    y = centers[torch.randint(0, 8, (m,), generator=gen)] + 0.5 * torch.randn(
        m, dim, generator=gen, dtype=dtype)
    return x, y


def _reference(cost, rho, epsilon=0.05):
    return sinkhorn(cost, epsilon=epsilon, rho=rho, tol=1e-12, num_iters=50000)


@pytest.mark.parametrize('rho', [math.inf, 1.0])
def test_fp32_batched_matches_cpu_fp64(rho):
    x, y = _features()
    costs = torch.stack([cosine_cost(x, y), cosine_cost(x.flip(0), y)])
    ref = _reference(costs, rho)
    res = sinkhorn(costs.float().to(CUDA), epsilon=0.05, rho=rho, tol=1e-6, num_iters=20000)
    assert res.plan.is_cuda
    torch.testing.assert_close(res.plan.double().cpu(), ref.plan, atol=1e-7, rtol=1e-3)


@pytest.mark.parametrize('storage', [torch.float16, torch.bfloat16])
def test_half_storage_on_cuda_agrees_with_fp32(storage):
    x, y = _features(seed=1)
    cost = cosine_cost(x, y).float().to(CUDA)
    full = sinkhorn(cost, epsilon=0.05, rho=1.0, tol=1e-6, num_iters=5000)
    half = sinkhorn(cost, epsilon=0.05, rho=1.0, tol=1e-6, num_iters=5000,
                    storage_dtype=storage)
    assert torch.isfinite(half.f).all() and torch.isfinite(half.g).all()
    # the kernel entries carry the storage's relative rounding (fp16 5e-4, bf16 4e-3)
    tol = 2e-3 if storage == torch.float16 else 1.6e-2
    mass = full.plan.sum()
    assert float((half.plan - full.plan).abs().sum() / mass) < tol


def test_small_epsilon_fp16_stays_finite():
    x, y = _features(seed=2)
    cost = (cosine_cost(x, y).float().clamp(0, 2)).to(CUDA)
    res = sinkhorn(cost, epsilon=1e-3, rho=1.0, num_iters=300, tol=0.0,
                   storage_dtype=torch.float16, warn=False)
    assert torch.isfinite(res.plan).all()


def test_online_on_cuda_matches_dense_cpu():
    x, y = _features(seed=3)
    ref = _reference(cosine_cost(x, y), 1.0)
    res = sinkhorn_online(x.float().to(CUDA), y.float().to(CUDA), epsilon=0.05, rho=1.0,
                          chunk_size=64, tol=1e-7, num_iters=20000)
    torch.testing.assert_close(res.f.double().cpu(), ref.f, atol=2e-5, rtol=0)
    torch.testing.assert_close(res.g.double().cpu(), ref.g, atol=2e-5, rtol=0)


def test_block_sparse_all_blocks_on_cuda_equals_dense():
    x, y = _features(n=500, m=260, seed=4)
    xf, yf = x.float().to(CUDA), y.float().to(CUDA)
    dense = sinkhorn(cosine_cost(xf, yf), epsilon=0.05, rho=1.0, tol=1e-7, num_iters=20000)
    sparse = block_sparse_sinkhorn(xf, yf, epsilon=0.05, rho=1.0, selection='all',
                                   block_size=64, target_block_size=64, tol=1e-7,
                                   num_iters=20000)
    torch.testing.assert_close(sparse.plan, dense.plan, atol=1e-6, rtol=1e-4)


def test_label_transfer_and_baselines_on_cuda_match_cpu():
    x, y = _features(seed=5)
    labels = torch.randint(0, 5, (x.shape[0],), generator=torch.Generator().manual_seed(0))
    res = sinkhorn(cosine_cost(x, y), epsilon=0.05, rho=1.0, tol=1e-10, num_iters=20000)
    cpu = transfer_labels(res, labels, 5)
    gpu = transfer_labels(res.plan.to(CUDA), labels.to(CUDA), 5)
    torch.testing.assert_close(gpu.probs.cpu(), cpu.probs, atol=1e-9, rtol=0)
    nn_cpu = nn_transfer(x, labels, y, chunk_size=50)
    nn_gpu = nn_transfer(x.to(CUDA), labels.to(CUDA), y.to(CUDA), chunk_size=50)
    assert torch.equal(nn_gpu.labels.cpu(), nn_cpu.labels)
    knn_cpu = knn_transfer(x, labels, y, 5, k=10, chunk_size=50)
    knn_gpu = knn_transfer(x.to(CUDA), labels.to(CUDA), y.to(CUDA), 5, k=10, chunk_size=50)
    # kNN weights are formed in fp32 on both devices (summation order differs)
    torch.testing.assert_close(knn_gpu.probs.cpu(), knn_cpu.probs, atol=2e-6, rtol=0)


def test_gradcheck_on_cuda():
    x, y = _features(n=6, m=5, dim=4, seed=6)
    cost = cosine_cost(x, y).to(CUDA).requires_grad_(True)

    kw = dict(epsilon=0.2, rho=1.0, tol=1e-14, num_iters=100000, warn=False)
    assert torch.autograd.gradcheck(lambda c: sinkhorn(c, **kw).plan, (cost,))


@pytest.mark.parametrize('storage', [None, torch.float16])
def test_cuda_graph_windows_equal_eager_iterations(storage, monkeypatch):
    from mmseg_saot.ot import _cuda_graph, _fused_step
    x, y = _features(n=400, m=300, seed=7)
    cost = cosine_cost(x, y).float().to(CUDA)
    kw = dict(epsilon=0.05, rho=1.0, tol=1e-6, num_iters=3000, storage_dtype=storage)
    # graphs replay the eager iterations, which run only with the fused iteration off
    monkeypatch.setitem(_fused_step.ENABLED, 'fused', False)
    monkeypatch.setitem(_cuda_graph.ENABLED, 'cuda_graphs', True)
    captured = []
    original = _cuda_graph.WindowGraph._capture
    monkeypatch.setattr(_cuda_graph.WindowGraph, '_capture',
                        lambda self, *a: (captured.append(1), original(self, *a))[1])
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)  # a failed capture warns
        graphed = sinkhorn(cost, **kw)
    assert captured, 'no CUDA graph was captured'
    monkeypatch.setitem(_cuda_graph.ENABLED, 'cuda_graphs', False)
    eager = sinkhorn(cost, **kw)
    assert graphed.num_iters == eager.num_iters
    torch.testing.assert_close(graphed.f, eager.f, atol=1e-9, rtol=0)
    torch.testing.assert_close(graphed.g, eager.g, atol=1e-9, rtol=0)
