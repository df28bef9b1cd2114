"""Timing and peak memory of one benchmark case, in this process or a fresh one."""
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch

from .problems import ROOT, make_problem, marginal_error, plan_of, run_method

# the script whose ``--worker`` option runs one case in a subprocess
SCRIPT = os.path.join(ROOT, 'tools', 'benchmark_ot.py')


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)  # that GPU, not the current one (cuda:1)


class PeakRSS:
    """Peak growth of the resident set above its value at ``start``, in MB.

    ``ru_maxrss`` cannot be reset, so transients of the setup (freed before the solve)
    would hide part of the solve's peak; a thread samples ``/proc/self/statm`` every
    millisecond instead (torch and BLAS release the GIL while they work). Memory the
    setup freed is handed back to the system first (glibc's ``malloc_trim``): left in the
    process, the solve would reuse it without the resident set growing, and its peak
    would read low (block-sparse at SAOT's working point read 18 MB instead of ~120).
    """

    def __init__(self):
        import threading
        _return_freed_memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.base = self.peak = self._rss()

    @staticmethod
    def _rss():
        with open('/proc/self/statm') as fh:
            return int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return (self.peak - self.base) / 2**20


def _return_freed_memory() -> None:
    """``malloc_trim(0)``: give the heap's free pages back to the system (glibc only; a
    no-op elsewhere)."""
    import ctypes
    import ctypes.util
    try:
        ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def case_worker(spec):
    """Run one (method, size, dim) case in this process and return a result dict.

    A method name ``name@T`` runs ``name`` with T CPU threads (set for BLAS and OpenMP
    by ``run_isolated`` before the subprocess starts).
    """
    device = spec['device']
    if '@' in spec['method']:
        spec = dict(spec, method=spec['method'].split('@')[0])
        torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    torch.manual_seed(0)
    size = spec['size']
    x, y, cost, a, b = make_problem(size, spec['dim'], device)
    eps, rho, iters = spec['eps'], spec['rho'], spec['iters']
    method = spec['method']
    if method.startswith('floor'):
        return memory_floor(cost, method, iters, spec['repeats'])
    run_method(method, x[:64], y[:64], cost[:64, :64].contiguous(), a[:64] * size / 64,
               b[:64] * size / 64, eps, rho, 5,
               potentials=False)  # warm-up of the timed call: imports, first-call costs
    times, peak, solution = timed_runs(
        lambda: run_method(method, x, y, cost, a, b, eps, rho, iters, potentials=False),
        spec['repeats'], device)
    if not spec.get('measure_error', True):
        return {'time': statistics.median(times), 'times': times, 'peak_mb': peak,
                'err': float('nan')}
    if solution[1] is None:  # POT without its log: one untimed run for the potentials
        solution = run_method(method, x, y, cost, a, b, eps, rho, iters)
    err = marginal_error(plan_of(solution), solution[1], solution[2], a, b, rho)
    return {'time': statistics.median(times), 'times': times, 'peak_mb': peak, 'err': err}


def timed_runs(solve, repeats, device):
    """``(times, peak_mb, last result)``: one memory run first, then ``repeats`` timed runs.

    The memory run comes first, before the allocator holds freed blocks of earlier
    runs, and is separate because the RSS sampling thread competes for the GIL and a
    core with the solver being timed.
    """
    sync(device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats(device)
        base_gpu = torch.cuda.memory_allocated(device)
        result = solve()
        sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base_gpu) / 2**20
    else:
        rss = PeakRSS().start()
        result = solve()
        peak = rss.stop()
    times = []
    for _ in range(repeats):
        result = None
        sync(device)
        t0 = time.perf_counter()
        result = solve()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times, peak, result


def memory_floor(cost, method, iters, repeats):
    """Time to read the N x M matrix twice per iteration, ``iters`` iterations."""
    mat = cost if method == 'floor-fp32' else cost.half()
    vec = torch.rand(mat.shape[1], device=mat.device, dtype=mat.dtype)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize(mat.device)
        t0 = time.perf_counter()
        for _ in range(2 * iters):
            torch.mv(mat, vec)
        torch.cuda.synchronize(mat.device)
        times.append(time.perf_counter() - t0)
    return {'time': statistics.median(times), 'times': times, 'peak_mb': 0.0, 'err': float('nan')}


def run_in_process(spec):
    """Run one worker spec here: a dense case (:func:`case_worker`), a block-sparse
    working point (``kind='block'``) or the street-scene features
    (``kind='streets_features'``)."""
    kind = spec.get('kind')
    if kind == 'block':
        from .block import block_worker
        return block_worker(spec)
    if kind == 'streets_features':
        from .streets import streets_features_worker
        return streets_features_worker(spec)
    return case_worker(spec)


def interleaved_rounds(specs, rounds, isolate):
    """Run each worker spec ``rounds`` times, all specs once per round in turn.

    Args:
        specs: ``{name: spec}``; each spec's own ``repeats`` is the timed runs of one
            round.
        rounds: number of rounds.
        isolate: as :func:`run_isolated`.

    Returns:
        ``{name: result}``: the median over rounds of each round's time, every timed
        run in ``times``, the largest peak, and the marginal error of the first round
        (measured there only).
    """
    runs = {name: [] for name in specs}
    for index in range(rounds):
        for name, spec in specs.items():
            runs[name].append(run_isolated(dict(spec, measure_error=index == 0), isolate))
    return {name: merge_rounds(results) for name, results in runs.items()}


def merge_rounds(results):
    """One result from the rounds of :func:`interleaved_rounds` (NaN time if any failed)."""
    times = [r['time'] for r in results]
    finite = all(math.isfinite(t) for t in times)
    merged = {'time': statistics.median(times) if finite else float('nan'),
              'times': [t for r in results for t in r.get('times', [r['time']])],
              'peak_mb': max((r['peak_mb'] for r in results if math.isfinite(r['peak_mb'])),
                             default=float('nan')),
              'err': results[0]['err']}
    notes = [r['note'] for r in results if 'note' in r]
    if notes:
        merged['note'] = notes[0]
    return merged


def run_isolated(spec, isolate):
    """Run a worker spec in a fresh subprocess (CPU peak memory) or in-process (GPU)."""
    if not isolate:
        try:
            return run_in_process(spec)
        except Exception as error:  # one failing peer must not lose the other rows
            torch.cuda.empty_cache()
            note = ('out of memory' if isinstance(error, torch.cuda.OutOfMemoryError)
                    else f'{type(error).__name__}: {str(error)[:60]}')
            print(f'  {spec.get("method", spec.get("mode"))} failed: {error!r}', flush=True)
            return {'time': float('nan'), 'peak_mb': float('nan'), 'err': float('nan'),
                    'note': note}
    cmd = [sys.executable, SCRIPT, '--worker', json.dumps(spec)]
    env = dict(os.environ)
    if '@' in spec.get('method', ''):
        threads = spec['method'].split('@')[1]
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        return {'time': float('nan'), 'peak_mb': float('nan'), 'err': float('nan'),
                'note': proc.stderr.strip().splitlines()[-1][:80] if proc.stderr else 'failed'}
    return json.loads(proc.stdout.strip().splitlines()[-1])
