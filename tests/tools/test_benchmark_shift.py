"""tools/benchmark_shift.py: per-shift runs, reuse of finished shifts, the table."""
import json
import os.path as osp
from pathlib import Path

import pytest
from tool_scripts import load_tool

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'benchmark_shift.py'


@pytest.fixture
def tool():
    return load_tool(TOOL)


def write_report(folder: Path, mious: dict) -> None:
    report = folder / 'pseudo_label_eval_val' / 'pseudo_label_miou.json'
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(dict(methods={m: dict(miou=v) for m, v in mious.items()})))


def write_key(tool, folder: Path, argv: list) -> None:
    """The sweep key of a shift scored by ``tool.main(argv)`` (as the tool writes it)."""
    key = tool.sweep_key(tool.parse_args(argv))
    (folder / tool.SWEEP_KEY).write_text(json.dumps(key))


def test_runs_missing_shifts_reuses_finished_ones_and_writes_the_table(tool, tmp_path,
                                                                       monkeypatch):
    work = tmp_path / 'work'
    write_report(work / 'shift_0', dict(nn=30.0, saot=33.0))   # finished earlier
    write_key(tool, work / 'shift_0', [])
    commands = []

    def fake_run(command, log):  # stands in for the two tools
        commands.append(command[1:])
        if 'generate_pseudo_labels.py' in command[1]:
            write_report(work / 'shift_0.5', dict(nn=20.0, saot=25.0))
    monkeypatch.setattr(tool, 'run_logged', fake_run)
    out = tmp_path / 'table.md'
    monkeypatch.chdir(tmp_path)  # relative paths are the caller's; the tools run in the repo
    assert tool.main(['--shifts', '0.5', '0', '--methods', 'nn', 'saot',
                      '--work-dir', 'work', '--out', 'table.md']) == 0
    make, score = commands  # shift 0 was not run again
    assert json.loads((work / 'shift_0.5' / tool.SWEEP_KEY).read_text()) == json.loads(
        (work / 'shift_0' / tool.SWEEP_KEY).read_text())  # the same config and data
    assert make[0].endswith('make_demo_data.py')
    assert make[make.index('--target-shift') + 1] == '0.5'
    assert make[make.index('--out') + 1] == str(work / 'shift_0.5' / 'data')
    # not a file from tmp_path: the default config, read from the repository root
    assert score[:2] == ['tools/generate_pseudo_labels.py', 'configs/saot/demo.py']
    assert score[score.index('--split') + 1] == 'val'
    # one feature store for every shift: the source images go through the backbone once
    assert score[score.index('--feature-cache') + 1] == str(work / 'features')
    assert (f'val_dataloader.dataset.data_root={work / "shift_0.5" / "data" / "cityscapes"}'
            in score)
    text = out.read_text()
    assert 'configs/saot/demo.py;' in text and str(tool.ROOT) not in text
    # the command that wrote it (it always said the bare `python tools/benchmark_shift.py`)
    assert ('`python tools/benchmark_shift.py --shifts 0.5 0 --methods nn saot --work-dir '
            'work --out table.md`') in text
    assert '| 0 | 30.0 | 33.0 | 1.10x |' in text
    assert '| 0.5 | 20.0 | 25.0 | 1.25x |' in text
    assert text.index('| 0 |') < text.index('| 0.5 |')


def test_a_report_without_every_method_is_scored_again(tool, tmp_path, monkeypatch):
    write_report(tmp_path / 'shift_1', dict(nn=30.0))
    write_key(tool, tmp_path / 'shift_1', [])
    calls = []

    def fake_run(command, log):
        calls.append(command)
        write_report(tmp_path / 'shift_1', dict(nn=22.0, saot=25.0))
    monkeypatch.setattr(tool, 'run_logged', fake_run)
    args = tool.parse_args(['--methods', 'nn', 'saot', '--work-dir', str(tmp_path), '--out',
                            str(tmp_path / 'table.md')])
    assert tool.score_shift(1.0, args) == dict(nn=22.0, saot=25.0)
    assert len(calls) == 2


def test_a_shift_scored_with_another_config_or_without_a_key_is_scored_again(
        tool, tmp_path, monkeypatch, capsys):
    config = tmp_path / 'my_demo.py'
    config.write_text("_base_ = ['%s']\n" % (tool.ROOT + '/configs/saot/demo.py'))
    argv = ['--config', str(config), '--methods', 'nn', '--work-dir', str(tmp_path), '--out',
            str(tmp_path / 'table.md')]
    args = tool.parse_args(argv)
    for shift in ('shift_0', 'shift_1'):
        write_report(tmp_path / shift, dict(nn=30.0))
    write_key(tool, tmp_path / 'shift_0', argv)
    runs = []

    def fake_run(command, log):
        runs.append(command)
        if 'generate_pseudo_labels.py' in command[1]:
            write_report(Path(command[command.index('--work-dir') + 1]), dict(nn=20.0))
    monkeypatch.setattr(tool, 'run_logged', fake_run)
    assert tool.score_shift(0.0, args) == dict(nn=30.0) and not runs  # unchanged: reused
    assert tool.score_shift(1.0, args) == dict(nn=20.0) and len(runs) == 2
    assert f'shift_1: scoring again, no {tool.SWEEP_KEY}' in capsys.readouterr().out
    # an edited labeller setting in the file: the config's hash changes
    config.write_text(config.read_text() + 'saot_labeler = dict(beta=3.0)\n')
    assert tool.score_shift(0.0, tool.parse_args(argv)) == dict(nn=20.0) and len(runs) == 4
    assert 'shift_0: scoring again, its config changed' in capsys.readouterr().out
    assert tool.score_shift(0.0, tool.parse_args(argv)) == dict(nn=20.0) and len(runs) == 4


def test_a_partial_sweep_needs_its_own_out_file(tool, capsys):
    # the docstring's own --shifts 0.5 1 example replaced the published 5-shift table
    with pytest.raises(SystemExit) as stop:
        tool.main(['--shifts', '0.5', '1', '--methods', 'nn', 'saot'])
    assert stop.value.code == 2
    assert ('a sweep other than the default one needs --out FILE (the default, '
            'benchmarks/demo_shift.md, holds the full table)') in capsys.readouterr().err


def test_shifts_outside_0_1_are_refused(tool, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(['--shifts', '0.5', '1.5'])
    assert '--shifts must be in [0, 1]' in capsys.readouterr().err


@pytest.mark.parametrize('args, message', [
    (['--methods', 'sinkhorn'], "argument --methods: invalid choice: 'sinkhorn'"),
    (['--work-dir', '{tmp}/afile'], '--work-dir: {tmp}/afile exists and is not a folder'),
])
def test_bad_methods_or_work_dir_are_usage_errors_before_any_work(tool, tmp_path, capsys,
                                                                  args, message):
    # a misspelt method failed in the child tool after the first shift's images were
    # rendered (~30 s); a --work-dir that is a file, with a traceback
    (tmp_path / 'afile').write_text('')
    with pytest.raises(SystemExit) as stop:
        tool.parse_args([arg.format(tmp=tmp_path) for arg in args] +
                        ['--out', str(tmp_path / 'table.md')])
    assert stop.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_a_failing_step_stops_with_the_end_of_its_log(tool, tmp_path):
    import sys
    log = tmp_path / 'step.log'
    with pytest.raises(SystemExit) as stop:
        tool.run_logged([sys.executable, '-c', 'import sys; print("boom"); sys.exit(3)'],
                        str(log))
    assert 'exit 3' in str(stop.value) and 'boom' in str(stop.value)
    assert str(log) in str(stop.value)


def test_other_code_or_weights_score_a_shift_again(tool, tmp_path, monkeypatch):
    # the key held the config and the data stamp only: a shift scored before a change of
    # the labeller's code, or of the weights file, was reused silently
    argv = ['--methods', 'nn', '--work-dir', str(tmp_path), '--out', str(tmp_path / 't.md')]
    key = tool.sweep_key(tool.parse_args(argv))
    monkeypatch.setattr(tool, 'code_digest', lambda: 'edited')
    assert tool.sweep_key(tool.parse_args(argv))['code'] == 'edited' != key['code']
    weights = tmp_path / 'w.safetensors'
    weights.write_bytes(b'1234')
    config = tmp_path / 'my_demo.py'
    config.write_text("_base_ = ['%s']\nmodel = dict(backbone=dict(checkpoint=%r))\n"
                      % (tool.ROOT + '/configs/saot/demo.py', str(weights)))
    argv += ['--config', str(config)]
    stamp = tool.sweep_key(tool.parse_args(argv))['weights']
    assert stamp.startswith('4 ')
    weights.write_bytes(b'123456')
    assert tool.sweep_key(tool.parse_args(argv))['weights'] != stamp
    # a relative path is the repository's (where the tools it runs start), wherever the
    # sweep was started from
    monkeypatch.chdir(tmp_path)
    relative = Path('configs', 'saot', 'demo.py')  # any file of the repository
    config.write_text("_base_ = ['%s']\nmodel = dict(backbone=dict(checkpoint=%r))\n"
                      % (tool.ROOT + '/configs/saot/demo.py', str(relative)))
    assert tool.sweep_key(tool.parse_args(argv))['weights'] != 'missing'


def test_the_default_table_and_work_dir_are_the_repositorys_from_any_folder(tool, tmp_path,
                                                                            monkeypatch):
    # they were relative to the current folder (a run from /tmp wrote
    # /tmp/benchmarks/demo_shift.md), while the config resolved against the repository
    monkeypatch.chdir(tmp_path)
    args = tool.parse_args([])
    assert args.out == osp.join(tool.ROOT, 'benchmarks', 'demo_shift.md')
    assert args.work_dir == osp.join(tool.ROOT, 'work_dirs', 'demo_shift')
    assert not (tmp_path / 'work_dirs').exists()
