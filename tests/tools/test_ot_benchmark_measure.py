"""tools/ot_benchmark/measure.py: the CPU peak memory sees what the solve allocates."""
import subprocess
import sys
import textwrap
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / 'tools'


def test_peak_rss_counts_memory_the_setup_freed_and_the_solve_reuses():
    # freed setup memory stayed in the heap (holes glibc keeps), the solve reused it
    # without the resident set growing, and its peak read near 0 (block-sparse at SAOT's
    # working point: 18 MB instead of ~120)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {str(TOOLS)!r})
        from ot_benchmark.measure import PeakRSS
        setup, kept = [], []
        for _ in range(2000):  # 64 KB chunks from the heap, each followed by one that stays
            setup.append(np.ones(8000))
            kept.append(np.ones(16))
        del setup  # 128 MB of holes
        rss = PeakRSS().start()
        solve = [np.ones(8000) for _ in range(2000)]
        print(rss.stop())
    """)
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         check=True).stdout
    assert float(out) > 100  # MB: the solve's 128 MB


def test_a_cuda_device_other_than_the_current_one_is_synchronised_and_measured(monkeypatch):
    # synchronize() and the memory counters without a device act on the current GPU
    # (cuda:0): cuda:1 was timed without waiting for its kernels and read ~0 MB
    import torch
    sys.path.insert(0, str(TOOLS))
    from ot_benchmark import measure
    calls = []
    for name in ('synchronize', 'reset_peak_memory_stats', 'memory_allocated',
                 'max_memory_allocated'):
        monkeypatch.setattr(torch.cuda, name,
                            lambda device=None, name=name: calls.append((name, device)) or 0)
    measure.timed_runs(lambda: None, repeats=1, device='cuda:1')
    assert calls and all(device == 'cuda:1' for _, device in calls)


def test_pot_is_timed_without_its_final_objective_and_scored_with_potentials(monkeypatch):
    # with log=True POT also evaluates its objective over N x M after the loop: one more
    # matrix of memory and ~8 % of its time, which ours never does
    import ot
    sys.path.insert(0, str(TOOLS))
    from ot_benchmark import measure
    calls = []
    solve = ot.unbalanced.sinkhorn_unbalanced

    def recording(*args, **kwargs):
        calls.append(kwargs['log'])
        return solve(*args, **kwargs)

    monkeypatch.setattr(ot.unbalanced, 'sinkhorn_unbalanced', recording)
    result = measure.case_worker(dict(device='cpu', method='pot-numpy', size=96, dim=8,
                                      eps=0.05, rho=1.0, iters=20, repeats=2))
    # warm-up, memory run and two timed runs without the log; the error from one with it
    assert calls == [False, False, False, False, True]
    assert len(result['times']) == 2 and 0 <= result['err'] < 1


def test_geomloss_plan_is_not_built_in_its_timed_solve():
    sys.path.insert(0, str(TOOLS))
    import torch
    from ot_benchmark.problems import make_problem, plan_of, run_method
    x, y, cost, a, b = make_problem(64, 8, 'cpu')
    solution = run_method('geomloss', x, y, cost, a, b, 0.05, 1.0, 0)
    assert not isinstance(solution[0], torch.Tensor)  # built when read
    plan = plan_of(solution)
    assert plan.shape == (64, 64) and bool(torch.isfinite(plan).all())


def test_rounds_interleave_the_methods_and_measure_the_error_once(monkeypatch):
    # each method used to run its repeats back to back: a slow spell of the 2-core VM
    # (it runs twice as fast in some minutes as in others) fell on one method only
    sys.path.insert(0, str(TOOLS))
    from ot_benchmark import measure
    calls = []
    times = {'ours': iter([3.0, 1.0, 2.0]), 'pot': iter([5.0, float('nan'), 4.0])}

    def fake_run(spec, isolate):
        calls.append((spec['method'], spec['measure_error']))
        time = next(times[spec['method']])
        out = {'time': time, 'times': [time], 'peak_mb': time * 10,
               'err': 1e-7 if spec['measure_error'] else float('nan')}
        if time != time:
            out['note'] = 'failed'
        return out

    monkeypatch.setattr(measure, 'run_isolated', fake_run)
    specs = {'ours': {'method': 'ours'}, 'pot': {'method': 'pot'}}
    results = measure.interleaved_rounds(specs, rounds=3, isolate=True)
    assert calls == [('ours', True), ('pot', True), ('ours', False), ('pot', False),
                     ('ours', False), ('pot', False)]
    assert results['ours'] == {'time': 2.0, 'times': [3.0, 1.0, 2.0], 'peak_mb': 30.0,
                               'err': 1e-7}
    assert results['pot']['note'] == 'failed' and results['pot']['time'] != results['pot']['time']
