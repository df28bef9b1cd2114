"""tools/benchmark_ot.py: its command line and sections (the parts: test_ot_benchmark_*.py)."""
from pathlib import Path

import pytest
from tool_scripts import load_tool

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'benchmark_ot.py'


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


def run_three_sections(tool, monkeypatch, tmp_path, iterations, accuracy, block):
    """Run the tool on stand-ins for the iters, accuracy and block sections, expecting it
    to exit; returns its exit code, the table it wrote and the table's path."""
    monkeypatch.setattr(tool, 'iterations_section', iterations)
    monkeypatch.setattr(tool, 'accuracy_section', accuracy)
    monkeypatch.setattr(tool, 'block_section', block)
    out = tmp_path / 'ot.md'
    with pytest.raises(SystemExit) as stop:
        tool.main(['--device', 'cpu', '--sections', 'iters,accuracy,block', '--out', str(out)])
    return stop.value.code, out.read_text(), out


def test_ctrl_c_keeps_the_sections_already_measured(tool, tmp_path, monkeypatch, capsys):
    def iterations(args, lines):
        lines.append('| iterations table |')

    def accuracy(args, device, lines):
        lines.append('| accuracy half')
        raise KeyboardInterrupt

    def block(*args):
        raise AssertionError('a later section must not run')

    code, text, out = run_three_sections(tool, monkeypatch, tmp_path, iterations, accuracy,
                                         block)
    assert code == 130
    assert '| iterations table |' in text and '| accuracy half' in text
    assert '**Interrupted (Ctrl-C) in the accuracy section**' in text
    assert f'the sections measured so far are in {out}' in capsys.readouterr().err



def test_sigterm_is_named_as_such_in_the_kept_table(tool, tmp_path, monkeypatch):
    # under interrupt_exits a SIGTERM arrives as Terminated; the table said "Ctrl-C"
    from mmseg_saot.utils.interrupts import Terminated

    def accuracy(args, device, lines):
        raise Terminated()

    code, text, _ = run_three_sections(tool, monkeypatch, tmp_path, lambda *a: None,
                                       accuracy, lambda *a: None)
    assert code == 143 and '**Interrupted (SIGTERM) in the accuracy section**' in text


def test_ctrl_c_leaves_an_earlier_table_whole_and_writes_a_partial_file(tool, tmp_path,
                                                                          monkeypatch, capsys):
    # the partial table replaced the whole one (the default out holds the full benchmark)
    out = tmp_path / 'ot.md'
    out.write_text('the whole earlier table\n')

    def iterations(args, lines):
        raise KeyboardInterrupt

    code, text, _ = run_three_sections(tool, monkeypatch, tmp_path, iterations,
                                       lambda *a: None, lambda *a: None)
    assert code == 130 and text == 'the whole earlier table\n'
    partial = tmp_path / 'ot.partial.md'
    assert '**Interrupted (Ctrl-C) in the iters section**' in partial.read_text()
    assert f'the sections measured so far are in {partial}' in capsys.readouterr().err


def test_an_unknown_section_is_a_usage_error(tool, capsys):
    with pytest.raises(SystemExit) as stop:
        tool.main(['--sections', 'speed,blocks'])
    assert stop.value.code == 2
    assert '--sections: unknown blocks; choose from speed,iters,accuracy,block,fullres' in \
        capsys.readouterr().err


@pytest.mark.parametrize('option, value, message', [
    ('--sizes', '0', 'must be comma-separated integers >= 1; "0" in "0" is not one'),
    ('--sizes', '-5', 'must be comma-separated integers >= 1; "-5" in "-5" is not one'),
    ('--sizes', '16,abc', 'must be comma-separated integers >= 1; "abc" in "16,abc" is not one'),
    ('--sizes', '', 'must be comma-separated integers >= 1, got ""'),
    ('--dims', '0', 'must be comma-separated integers >= 1; "0" in "0" is not one'),
    ('--dims', '384,', 'must be comma-separated integers >= 1; "" in "384," is not one'),
    ('--block-seeds', '0,x', 'must be comma-separated integers >= 0; "x" in "0,x" is not one'),
    ('--block-seeds', '-1', 'must be comma-separated integers >= 0; "-1" in "-1" is not one'),
])
def test_bad_lists_are_usage_errors_before_any_solve(tool, tmp_path, monkeypatch, capsys,
                                                     option, value, message):
    def section(*args):
        raise AssertionError('no section may run')

    for name in ('speed_section', 'block_section'):
        monkeypatch.setattr(tool, name, section)
    with pytest.raises(SystemExit) as stop:
        tool.main(['--device', 'cpu', '--sections', 'speed,block', '--out',
                   str(tmp_path / 'ot.md'), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f'argument {option}: {message}' in err and 'Traceback' not in err


def test_lists_are_parsed_into_integers(tool, tmp_path, monkeypatch):
    seen = {}

    def section(args, device, isolate, lines):
        seen.update(sizes=args.sizes, dims=args.dims, seeds=args.block_seeds)

    monkeypatch.setattr(tool, 'speed_section', section)
    tool.main(['--device', 'cpu', '--sections', 'speed', '--out', str(tmp_path / 'ot.md'),
               '--sizes', '16, 32', '--block-seeds', '0,3'])
    assert seen == dict(sizes=[16, 32], dims=[384, 1024], seeds=[0, 3])


def test_an_empty_section_name_is_named(tool, capsys):
    with pytest.raises(SystemExit) as stop:
        tool.main(['--sections', ''])
    assert stop.value.code == 2
    assert '--sections: unknown ""; choose from' in capsys.readouterr().err


def test_a_failing_section_is_recorded_and_the_others_are_kept(tool, tmp_path, monkeypatch,
                                                               capsys):
    # any error but Ctrl-C (a peer missing from the accuracy section, the streets
    # weights) threw away every section measured before it, and the file was not written
    def iterations(args, lines):
        lines.append('| iterations table |')

    def accuracy(args, device, lines):
        raise ImportError('No module named geomloss')

    def block(args, device, isolate, lines):
        lines.append('| block table |')

    code, text, _ = run_three_sections(tool, monkeypatch, tmp_path, iterations, accuracy,
                                       block)
    assert code == 1
    # the command that wrote the table, quoted (it was sys.argv, unquoted: pytest's here)
    assert (f'Command: `python tools/benchmark_ot.py --device cpu --sections '
            f'iters,accuracy,block --out {tmp_path / "ot.md"}`') in text
    assert '| iterations table |' in text and '| block table |' in text
    assert ('**The accuracy section failed** (ImportError: No module named geomloss); the '
            'other sections are complete.') in text
    assert 'accuracy section failed' in capsys.readouterr().err


def test_a_subset_of_sections_needs_its_own_out_file(tool, capsys):
    # the README's block command wrote its one section over benchmarks/ot_cpu.md, the
    # full table other numbers cite
    with pytest.raises(SystemExit) as stop:
        tool.main(['--device', 'cpu', '--sections', 'block'])
    assert stop.value.code == 2
    assert ('--sections block runs a part of the benchmark: give --out FILE (the default, '
            'benchmarks/ot_cpu.md, holds the whole table)' in capsys.readouterr().err)


def test_time_to_accuracy_charges_pot_its_fewest_iterations_not_the_grid_step(tool,
                                                                             monkeypatch):
    # POT was tried at 50, 100, 200, ... iterations only: one that got there at 138 was
    # charged 200 (1.4x its time), while ours stops on its own tolerance
    import argparse

    import torch
    a = torch.full((4,), 0.25, dtype=torch.float64)

    class Reference:
        def marginals(self):
            return a, a

    def fake_run(method, x, y, cost, a_, b_, eps, rho, iters, tol=0.0, scaling=0.5,
                 potentials=True):
        if method == 'ours-fp64':
            return Reference(), None, None
        reached = iters >= 138 if method.startswith('pot') else True
        plan = torch.outer(a, a) * (1.0 if reached else 1.001)
        return plan, None, None

    monkeypatch.setattr(tool, 'make_problem', lambda size, dim, device: (None,) * 5)
    monkeypatch.setattr(tool, 'run_method', fake_run)
    lines = []
    tool.accuracy_section(argparse.Namespace(accuracy_size=4, eps=0.05, rho=1.0, repeats=1),
                          'cpu', lines)
    rows = {line.split(' | ')[0].strip('| '): line for line in lines if line.startswith('| ')}
    assert '| iters 138 |' in rows['pot-numpy'] and '| iters 138 |' in rows['pot-torch']
    assert '| tol 1e-05 |' in rows['ours']
