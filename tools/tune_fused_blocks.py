"""Time the fused CUDA Sinkhorn iteration over Triton block shapes and warps.

Prints ms / iteration at N = M (default 16384) for fp32, fp16 and bf16 storage, one
row per setting of ``FusedIteration``'s product tiling (rows product: BLOCK_R x
BLOCK_C, warps; columns product: COLS_BLOCK_R x COLS_BLOCK_C, warps), varied one
product at a time from the defaults, with the memory floor of each storage. Needs a
CUDA GPU and Triton (``tools/benchmark_ot.py --device cpu`` times the CPU solvers)::

    python tools/tune_fused_blocks.py --n 16384 --out benchmarks/fused_tuning.md
"""
import argparse
import os
import sys
import time
import types

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = [(8, 512, 4), (4, 1024, 4), (16, 512, 4), (16, 256, 4), (8, 1024, 8), (32, 256, 8),
        (2, 2048, 8), (16, 1024, 8)]
COLS = [(32, 128, 4), (64, 128, 4), (32, 256, 4), (16, 256, 4), (64, 256, 8), (128, 128, 8),
        (32, 512, 8)]


def import_ot():
    if 'mmseg_saot' not in sys.modules:
        package = types.ModuleType('mmseg_saot')
        package.__path__ = [os.path.join(ROOT, 'mmseg_saot')]
        sys.modules['mmseg_saot'] = package
    from mmseg_saot import ot
    from mmseg_saot.ot import _fused_step
    return ot, _fused_step


def time_solve(ot, cost, storage, iters=100, repeats=3) -> float:
    ot.sinkhorn(cost, epsilon=0.05, rho=1.0, num_iters=10, tol=0.0, storage_dtype=storage)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        ot.sinkhorn(cost, epsilon=0.05, rho=1.0, num_iters=iters, tol=0.0,
                    storage_dtype=storage)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2] / iters


def parse_args(argv=None) -> argparse.Namespace:
    """The options; exits with code 2 (a usage error) on a bad value or without a CUDA
    GPU or Triton, before the N x N cost matrix is made."""
    _, fused = import_ot()  # first: the package without its mmseg-importing __init__
    from mmseg_saot.utils.arg_types import output_file, positive_int
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=positive_int, default=16384, help='N = M')
    parser.add_argument('--out', type=output_file, help='also write the table (markdown) here')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error('this tool times the fused CUDA iteration and needs a CUDA GPU; '
                     'torch.cuda.is_available() is False here (run it on a GPU machine; '
                     'tools/benchmark_ot.py --device cpu times the CPU solvers)')
    if fused._kernels() is None:
        parser.error('this tool times the fused Triton kernels and needs Triton: '
                     '`pip install triton` (CUDA builds of torch ship it)')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    ot, fused = import_ot()
    cls = fused.FusedIteration
    gen = torch.Generator(device='cuda').manual_seed(0)
    unit = torch.nn.functional.normalize
    x = unit(torch.randn(args.n, 1024, device='cuda', generator=gen), dim=1)
    y = unit(torch.randn(args.n, 1024, device='cuda', generator=gen), dim=1)
    cost = (1 - x @ y.t()).clamp_min(0)
    del x, y
    storages = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
    default = (cls.BLOCK_R, cls.BLOCK_C, cls.ROWS_WARPS, cls.COLS_BLOCK_R, cls.COLS_BLOCK_C,
               cls.COLS_WARPS)
    settings = [('rows', r) for r in ROWS] + [('cols', c) for c in COLS]
    lines = [f'# Fused iteration tiling, N = M = {args.n}, {torch.cuda.get_device_name()}', '',
             '| product | tile (rows x cols, warps) | fp32 ms/it | fp16 ms/it | bf16 ms/it |',
             '|---|---|---|---|---|']
    for which, (br, bc, warps) in settings:
        cls.BLOCK_R, cls.BLOCK_C, cls.ROWS_WARPS = default[:3]
        cls.COLS_BLOCK_R, cls.COLS_BLOCK_C, cls.COLS_WARPS = default[3:]
        if which == 'rows':
            cls.BLOCK_R, cls.BLOCK_C, cls.ROWS_WARPS = br, bc, warps
        else:
            cls.COLS_BLOCK_R, cls.COLS_BLOCK_C, cls.COLS_WARPS = br, bc, warps
        cells = []
        for storage in storages.values():
            try:
                cells.append(f'{time_solve(ot, cost, storage):.3f}')
            except Exception as err:  # a tile Triton cannot compile: report, go on
                cells.append(f'error {type(err).__name__}')
        lines.append(f'| {which} | {br} x {bc}, {warps} | ' + ' | '.join(cells) + ' |')
        print(lines[-1], flush=True)
    floor = []
    for nbytes in (4, 2):
        buf = torch.empty(args.n * args.n * nbytes // 4, dtype=torch.float32, device='cuda')
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            buf.sum()
            buf.sum()
        torch.cuda.synchronize()
        floor.append(1000 * (time.perf_counter() - start) / 20)
        del buf
    lines.append(f'\nMemory floor (read the kernel twice): fp32 {floor[0]:.3f} ms, '
                 f'fp16 {floor[1]:.3f} ms.')
    print(lines[-1])
    if args.out:
        from mmseg_saot.utils.atomic import atomic_write_text
        atomic_write_text(args.out, '\n'.join(lines) + '\n')


if __name__ == '__main__':
    import_ot()  # first: the package without its mmseg-importing __init__
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('Nothing was written (the table is written at the end).'):
        main()
