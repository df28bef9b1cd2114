"""tools/smoke_full_resolution.py: its options are checked before any data is generated."""
import pytest
from tool_scripts import load_tool


@pytest.fixture
def tool(monkeypatch):
    module = load_tool('tools/smoke_full_resolution.py')

    def run(command):
        raise AssertionError(f'nothing may run: {command}')

    monkeypatch.setattr(module, 'run', run)
    return module


@pytest.mark.parametrize('args, message', [
    (['--num-images', '0'], 'argument --num-images: must be an integer >= 1, got "0"'),
    (['--stage-iters', '-1'], 'argument --stage-iters: must be an integer >= 1, got "-1"'),
    (['--config', '{tmp}/nope.py'], '--config {tmp}/nope.py: no such file; give a config file '
     'such as '),
    (['--out', '{tmp}/afile'], '--out: {tmp}/afile exists and is not a folder; pick another '
     'path.'),
    (['--cfg-options', 'train_cfg.max_iters=2', 'model.backbone'],
     "--cfg-options: 'model.backbone' is not key=value"),
])
def test_bad_options_are_usage_errors_before_any_work(tool, tmp_path, capsys, args, message):
    (tmp_path / 'afile').write_text('')
    args = [arg.format(tmp=tmp_path) for arg in args]
    with pytest.raises(SystemExit) as stop:
        tool.main(['--out', str(tmp_path / 'out'), *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f'error: {message.format(tmp=tmp_path)}' in err and 'Traceback' not in err


def test_good_options_pass(tool, tmp_path):
    args = tool.parse_args(['--out', str(tmp_path / 'out'), '--num-images', '2',
                            '--stage-iters', '1'])
    assert (args.num_images, args.stage_iters) == (2, 1)
    assert (tmp_path / 'out').is_dir()
    assert 'train_cfg.max_iters=2' in tool.overrides('data', args)


def test_a_failing_step_ends_with_its_exit_status_and_no_traceback(monkeypatch, tmp_path,
                                                                   capsys):
    # the child had printed its own message; a CalledProcessError traceback followed
    from mmseg_saot.utils import child_process
    module = load_tool('tools/smoke_full_resolution.py')
    monkeypatch.setattr(child_process, 'run_child', lambda command: 2)
    assert module.main(['--out', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'error: make_demo_data.py exited with status 2; see its messages above.' in err
    assert 'Traceback' not in err


def test_a_step_ended_by_a_signal_exits_as_the_shell_would(monkeypatch, tmp_path, capsys):
    # run_child returns -9 for SIGKILL: the tool exited with 247, "status -9"
    from mmseg_saot.utils import child_process
    module = load_tool('tools/smoke_full_resolution.py')
    monkeypatch.setattr(child_process, 'run_child', lambda command: -9)
    assert module.main(['--out', str(tmp_path / 'out')]) == 137
    assert 'error: make_demo_data.py was ended by SIGKILL;' in capsys.readouterr().err
