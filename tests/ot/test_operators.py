"""The stored-kernel operator (_operators.py): chunked passes, threaded CPU rebuilds."""
import math
import threading
import time

import pytest
import torch

from mmseg_saot.ot import _operators, sinkhorn
from mmseg_saot.ot._operators import KernelOperator, rebuild_rows
from mmseg_saot.ot.costs import DenseCost


def test_rebuild_rows_cpu_chunks_stay_cache_sized():
    # 8 MB of fp32 rows on CPU, whether or not a pass allocates temporaries
    for temporaries in (False, True):
        assert rebuild_rows(21904, 2738, 1, 'cpu', temporaries) == (1 << 23) // (4 * 2738)
    assert rebuild_rows(10, 2738, 1, 'cpu', True) == 10


def test_rebuild_rows_gpu_takes_the_whole_kernel_without_temporaries():
    assert rebuild_rows(21904, 2738, 1, 'cuda', temporaries=False) == 21904
    # with temporaries, 64 MB of fp32 per chunk, per problem of the batch
    assert rebuild_rows(16384, 16384, 2, 'cuda', temporaries=True) == (1 << 26) // (4 * 16384 * 2)


def _operator(cost, epsilon=0.05, storage=torch.float32, log_b=None):
    n, m = cost.shape
    log_a = torch.full((1, n), -math.log(n), dtype=torch.float64)
    log_b = torch.full((1, m), -math.log(m), dtype=torch.float64) if log_b is None else log_b
    return KernelOperator(DenseCost(cost), log_a, log_b, epsilon, storage)


@pytest.mark.parametrize('storage', [torch.float32, torch.float16])
def test_whole_and_chunked_passes_build_the_same_kernel(storage):
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(300, 70, generator=gen) * 2
    f = torch.randn(1, 300, generator=gen, dtype=torch.float64) * 0.3
    g = torch.randn(1, 70, generator=gen, dtype=torch.float64) * 0.3
    ops = []
    for rows in (7, 300):  # chunks of 7 rows vs the whole kernel at once
        op = _operator(cost, storage=storage)
        op.rebuild_rows = op.absorb_rows = rows
        op.set_epsilon(0.05, torch.zeros_like(f), torch.zeros_like(g))
        if storage == torch.float32:
            op._absorb(f, g)
        else:
            op._rebuild(f, g)
        ops.append(op)
    assert torch.equal(ops[0].kernel, ops[1].kernel)
    assert torch.equal(ops[0].f_hat, ops[1].f_hat)


def test_in_place_rule_reads_storage_and_masked_columns(monkeypatch):
    calls = []
    real = _operators.rebuild_rows

    def spy(num_rows, num_cols, batch, device_type, temporaries):
        calls.append(temporaries)
        return real(num_rows, num_cols, batch, device_type, temporaries)

    monkeypatch.setattr(_operators, 'rebuild_rows', spy)
    cost = torch.rand(20, 10)
    _operator(cost)  # fp32 cost, fp32 kernel: rows are views, exponents in place
    _operator(cost, storage=torch.float16)  # fp32 exponents next to an fp16 kernel
    _operator(cost.half(), storage=torch.float16)  # fp16 rows are converted to fp32
    masked = torch.zeros(1, 10, dtype=torch.float64)
    masked[0, 3] = -math.inf  # a column of zero mass: masked maxima are temporaries
    _operator(cost, log_b=masked)
    # (rebuild, absorb) per operator; absorptions never allocate
    assert calls == [False, False, True, False, True, False, True, False]


def test_sinkhorn_unchanged_by_whole_kernel_passes(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    cost = torch.rand(400, 90, generator=gen) * 2
    results = []
    for chunk in (lambda num_rows: 7, lambda num_rows: num_rows):  # chunked, then whole
        monkeypatch.setattr(_operators, 'rebuild_rows',
                            lambda num_rows, num_cols, batch, device_type, temporaries,
                            chunk=chunk: chunk(num_rows))
        results.append(sinkhorn(cost, epsilon=0.02, rho=1.0, num_iters=300, tol=1e-5))
    chunked, whole = results
    assert whole.num_iters == chunked.num_iters and bool(whole.converged)
    assert torch.equal(whole.f, chunked.f) and torch.equal(whole.g, chunked.g)


def test_cpu_iteration_skips_a_row_block_of_zero_weight():
    # 2000 columns make the CPU iteration (_cpu_step.py) take rows in blocks of 1048:
    # the first block has only sources of zero weight, whose running maximum -inf made
    # the kernel solve NaN (it raised; 'auto' fell back to the log domain)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(1100, 8, generator=gen), torch.randn(2000, 8, generator=gen)
    cost = torch.cdist(x, y) ** 2 / 8
    a, b = torch.full((1100,), 1 / 1100), torch.full((2000,), 1 / 2000)
    a[:1048] = 0
    kernel = sinkhorn(cost, a, b, epsilon=0.1, rho=1.0, method='kernel')
    assert kernel.method == 'kernel' and bool(kernel.converged)
    exact = sinkhorn(cost.double(), a.double(), b.double(), epsilon=0.1, rho=1.0,
                     method='log')
    torch.testing.assert_close(kernel.plan.double(), exact.plan, atol=1e-9, rtol=1e-3)
    assert sinkhorn(cost, a, b, epsilon=0.1, rho=1.0).method == 'kernel'


def test_row_chunks_run_on_pool_threads_in_the_callers_modes():
    seen = []

    def record(r0, r1):
        seen.append((r0, r1, threading.current_thread().name,
                     torch.is_grad_enabled(), torch.is_inference_mode_enabled()))

    _operators.for_row_chunks(record, 10, 3, workers=4)
    assert sorted(s[:2] for s in seen) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert all(s[2].startswith('saot-kernel') for s in seen)
    seen.clear()
    with torch.no_grad():
        _operators.for_row_chunks(record, 10, 3, workers=2)
    assert [s[3:] for s in seen] == [(False, False)] * 4
    seen.clear()
    with torch.inference_mode():
        _operators.for_row_chunks(record, 10, 3, workers=2)
    assert [s[3:] for s in seen] == [(False, True)] * 4


def test_row_chunks_reraise_once_every_chunk_has_finished():
    done = []

    def chunk(r0, r1):
        if r0 == 0:
            raise ValueError('chunk 0')
        time.sleep(0.02)
        done.append(r0)

    with pytest.raises(ValueError, match='chunk 0'):
        _operators.for_row_chunks(chunk, 12, 3, workers=2)
    assert sorted(done) == [3, 6, 9]


@pytest.mark.parametrize('storage', [torch.float32, torch.float16])
def test_threaded_rebuild_and_absorption_equal_serial_ones(storage):
    gen = torch.Generator().manual_seed(5)
    cost = torch.rand(2, 50, 30, generator=gen)
    log_w = torch.log(torch.rand(2, 50, generator=gen, dtype=torch.float64))
    log_b = torch.log(torch.rand(2, 30, generator=gen, dtype=torch.float64))
    log_b[0, 4] = -math.inf  # a zero-mass column: the masked row maxima
    f = torch.randn(2, 50, generator=gen, dtype=torch.float64) * 0.1
    g = torch.randn(2, 30, generator=gen, dtype=torch.float64) * 0.1
    kernels = []
    for workers, mode in ((1, torch.no_grad), (3, torch.no_grad), (3, torch.inference_mode)):
        with mode():  # inference tensors are written in place only in inference mode
            op = KernelOperator(DenseCost(cost), log_w, log_b, 0.1, storage,
                                cpu_workers=workers)
            op.rebuild_rows = op.absorb_rows = 7
            op.set_epsilon(0.1, f, g)
            built = op.kernel.clone()
            op._absorb(f + 0.05, g - 0.02)
            kernels.append((built, op.kernel.clone(), op.f_hat.clone()))
    assert op.cpu_workers == 3
    for serial, *threaded in zip(*kernels):
        for other in threaded:
            assert torch.equal(serial, other)
