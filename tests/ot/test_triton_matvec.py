"""The Triton half-precision products, run on CPU by Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before Triton is imported, so the checks run
in a subprocess. On a GPU the same kernels serve fp16/bf16 kernels (test_cuda.py).
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip('triton')

CHECKS = textwrap.dedent('''
    import math, sys, torch
    sys.path.insert(0, 'tools')
    from run_ot_tests import import_ot_alone
    ot = import_ot_alone()
    from mmseg_saot.ot import _matvec, _triton_matvec as tm

    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float16, torch.bfloat16):
        for b, n, m in ((1, 37, 53), (2, 130, 75), (1, 300, 9)):
            k = torch.rand(b, n, m, generator=gen).to(dtype)
            assert tm.available(k)
            w = torch.rand(b, m, generator=gen) * 1e4  # beyond fp16's 11 bits of vector
            u = torch.rand(b, n, generator=gen) * 1e-6
            ref_rows = torch.bmm(k.double(), w.double()[..., None])[..., 0]
            ref_cols = torch.bmm(u.double()[:, None], k.double())[:, 0]
            rows = tm.rows_matvec(k, w, block_rows=8, block_cols=16)
            cols = tm.cols_matvec(k, u, block_rows=8, block_cols=16, splits=3)
            assert rows.dtype == torch.float32 and cols.shape == (b, m)
            assert float(((rows - ref_rows) / ref_rows).abs().max()) < 1e-6, 'rows'
            assert float(((cols - ref_cols) / ref_cols).abs().max()) < 1e-6, 'cols'

    # the whole fp16 solve through the Triton products equals the CPU chunked path
    x = torch.randn(90, 16, generator=gen)
    y = torch.randn(70, 16, generator=gen)
    cost = ot.cosine_cost(x, y)
    kw = dict(epsilon=0.05, rho=1.0, tol=0.0, num_iters=40, warn=False,
              storage_dtype=torch.float16)
    via_triton = ot.sinkhorn(cost, **kw)
    _matvec.HALF_CUDA_BACKEND['name'] = 'cublas'  # CPU tensors: chunked up-cast path
    via_cpu = ot.sinkhorn(cost, **kw)
    diff = float((via_triton.plan - via_cpu.plan).abs().sum() / via_cpu.plan.sum())
    assert diff < 1e-5, diff
    print('ok')
''')


def test_triton_products_and_fp16_solve_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run([sys.executable, '-c', CHECKS], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith('ok')
