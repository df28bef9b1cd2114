"""tools/test.py options that need no run: painting predictions (--show, --show-dir) and
where label maps go (--out)."""
import os

import pytest
from mmengine.config import Config
from tool_scripts import REPO_ROOT, load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/test.py')


def demo_config() -> Config:
    return Config.fromfile(str(REPO_ROOT / 'configs' / 'saot' / 'demo.py'))


def test_show_dir_paints_every_image_into_the_folder(tool, tmp_path):
    cfg = demo_config()
    painted = str(tmp_path / 'painted')
    tool.paint_predictions(cfg, painted, show=False, wait_time=2.0)
    hook = cfg.default_hooks.visualization
    assert (hook.draw, hook.interval, cfg.visualizer.save_dir) == (True, 1, painted)
    assert not hook.get('show', False)


def test_show_opens_a_window_for_wait_time_seconds(tool, monkeypatch):
    monkeypatch.setenv('DISPLAY', ':0')
    cfg = demo_config()
    tool.paint_predictions(cfg, None, show=True, wait_time=0.5)
    hook = cfg.default_hooks.visualization
    assert (hook.draw, hook.show, hook.wait_time) == (True, True, 0.5)


def test_show_without_a_display_is_a_clear_message(tool, monkeypatch, capsys):
    monkeypatch.setattr(tool.sys, 'platform', 'linux')
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    with pytest.raises(SystemExit) as stop:
        tool.paint_predictions(demo_config(), None, show=True, wait_time=2.0)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert 'error: --show needs a display' in err and 'with --show-dir DIR instead' in err


def test_painting_with_several_processes_says_only_rank_0_paints(tool, monkeypatch, tmp_path):
    logged = []
    monkeypatch.setattr(tool, 'print_log', lambda message, **kwargs: logged.append(message))
    cfg = demo_config()
    tool.paint_predictions(cfg, str(tmp_path), show=False, wait_time=2.0)
    assert logged == []  # one process paints every image
    cfg.launcher = 'pytorch'
    tool.paint_predictions(cfg, str(tmp_path), show=False, wait_time=2.0)
    assert len(logged) == 1 and 'only its share of the test images is painted' in logged[0]


def test_out_sets_the_folder_and_moves_an_earlier_tests_label_maps_aside(tool, tmp_path):
    out = tmp_path / 'pred'
    out.mkdir()
    (out / 'frankfurt_0001.png').write_bytes(b'earlier')
    (out / 'notes.txt').write_text('mine')  # not a label map: left where it is
    cfg = demo_config()
    tool.save_predictions(cfg, str(out))
    assert cfg.test_evaluator['output_dir'] == str(out)
    moved = [name for name in os.listdir(out) if name.startswith('earlier-')]
    assert sorted(os.listdir(out)) == sorted(moved + ['notes.txt']) and len(moved) == 1
    assert (out / moved[0] / 'frankfurt_0001.png').read_bytes() == b'earlier'


def test_out_under_several_processes_moves_earlier_label_maps_on_rank_0_only(
        tool, tmp_path, monkeypatch):
    # every rank of dist_test.sh moved the same files at once: one of them failed with
    # FileNotFoundError on a file another had just moved
    out = tmp_path / 'pred'
    out.mkdir()
    (out / 'frankfurt_0001.png').write_bytes(b'earlier')
    monkeypatch.setenv('RANK', '1')
    cfg = demo_config()
    tool.save_predictions(cfg, str(out))
    assert cfg.test_evaluator['output_dir'] == str(out)
    assert sorted(os.listdir(out)) == ['frankfurt_0001.png']  # left to rank 0
    monkeypatch.setenv('RANK', '0')
    tool.save_predictions(demo_config(), str(out))
    assert [name for name in os.listdir(out) if not name.startswith('earlier-')] == []


def test_out_with_several_evaluators_gives_each_its_own_folder(tool, tmp_path):
    cfg = demo_config()
    cfg.test_evaluator = [dict(type='IoUMetric'), dict(type='ClassIoUMetric'),
                          dict(type='IoUMetric', iou_metrics=['mDice'])]
    tool.save_predictions(cfg, str(tmp_path))
    assert [e['output_dir'] for e in cfg.test_evaluator] == [
        str(tmp_path / 'IoUMetric'), str(tmp_path / 'ClassIoUMetric'),
        str(tmp_path / 'IoUMetric.2')]
    assert all((tmp_path / name).is_dir()
               for name in ('IoUMetric', 'ClassIoUMetric', 'IoUMetric.2'))


def test_out_without_an_evaluator_that_writes_label_maps_is_a_clear_message(tool, tmp_path,
                                                                            capsys):
    cfg = demo_config()
    cfg.test_evaluator = dict(type='NotRegisteredMetric')
    with pytest.raises(SystemExit) as stop:
        tool.save_predictions(cfg, str(tmp_path / 'pred'))
    assert stop.value.code == 2
    assert 'error: --out: no test evaluator of this config writes label maps' in (
        capsys.readouterr().err)


@pytest.mark.parametrize('flags, unset', [
    (['--out', '{tmp}/pred'], 'test_evaluator'),
    (['--tta'], 'test_dataloader'),
])
def test_flags_of_a_config_without_a_test_loop_part_name_it(tool, tmp_path, monkeypatch,
                                                            capsys, flags, unset):
    # --out and --tta reached into test_evaluator / test_dataloader before the check that
    # names them: "'NoneType' object has no attribute ..." tracebacks
    import torch
    checkpoint = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': {}}, checkpoint)
    config = str(REPO_ROOT / 'configs' / 'saot' / 'demo.py')
    monkeypatch.setattr(tool.sys, 'argv', [
        'test.py', config, str(checkpoint), '--work-dir', str(tmp_path / 'work'),
        *[flag.format(tmp=tmp_path) for flag in flags], '--cfg-options', f'{unset}=None'])
    with pytest.raises(SystemExit) as stop:
        tool.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert (f'tools/test.py needs test_dataloader, test_cfg, test_evaluator; {unset} not set'
            in err and 'Traceback' not in err)


def test_painting_without_a_visualization_hook_is_a_clear_message(tool, tmp_path, capsys):
    cfg = demo_config()
    cfg.default_hooks.visualization = None
    with pytest.raises(SystemExit) as stop:
        tool.paint_predictions(cfg, str(tmp_path), show=False, wait_time=2.0)
    assert stop.value.code == 2
    assert 'error: --show/--show-dir: the config has no default_hooks.visualization' in (
        capsys.readouterr().err)
