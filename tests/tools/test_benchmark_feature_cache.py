"""tools/benchmark_feature_cache.py: its work folder (temporary unless --work-dir, removed
also after an error or Ctrl-C) and the message when the pseudo-labels a config trains on
are missing."""
import json
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_uda import tiny_uda_config, write_tiny_uda_data
from tool_scripts import load_tool

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'benchmark_feature_cache.py'
KEY = 'train_dataloader.dataset.target.pseudo_label_dir'


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny UDA config, and a private temporary folder to see what is left in it."""
    data = write_tiny_uda_data(tmp_path / 'data', num_source=2, num_target=2, num_val=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
    return config, data, scratch


def write_pseudo_labels(folder: Path, data: Path) -> None:
    """A complete cache: the target ground truth as labels, full confidence."""
    for truth in (data / 'cs' / 'gtFine' / 'train').rglob('*.png'):
        key = truth.relative_to(data / 'cs' / 'gtFine' / 'train').as_posix().replace(
            '_gtFine_labelTrainIds', '_leftImg8bit')
        for kind in ('labels', 'confidence'):
            (folder / kind / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(truth, folder / 'labels' / key)
        label = cv2.imread(str(truth), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(folder / 'confidence' / key), np.full_like(label, 255))
    (folder / 'manifest.json').write_text(json.dumps(dict(complete=True)))


def test_missing_pseudo_labels_name_the_folder_and_the_command(tiny, capsys):
    config, _, scratch = tiny
    with pytest.raises(SystemExit) as stop:
        load_tool(TOOL).main([str(config), '--iters', '1'])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {KEY}={scratch}/feature_cache_bench_'), err
    assert (f'Write them with `python tools/generate_pseudo_labels.py {config}` (into '
            f'./work_dirs/tiny/pseudo_labels), then add --cfg-options '
            f'{KEY}=./work_dirs/tiny/pseudo_labels\n') in err
    assert not list(scratch.glob('feature_cache_bench_*'))


def test_a_model_without_a_feature_cache_is_named(tmp_path, capsys):
    # the tool set model.feature_cache on any model: an EncoderDecoder config ended in
    # "has no option 'feature_cache' (from the config or --cfg-options)"
    config = tmp_path / 'plain.py'
    config.write_text("_base_ = ['mmseg::_base_/default_runtime.py']\n"
                      "model = dict(type='EncoderDecoder')\n")
    with pytest.raises(SystemExit) as stop:
        load_tool(TOOL).main([str(config), '--iters', '1'])
    assert stop.value.code == 2
    assert (f"error: {config}: model.type is 'EncoderDecoder'; this benchmark times the "
            'frozen-feature cache of an EMATeacherUDA model') in capsys.readouterr().err


def test_a_given_work_dir_is_kept(tiny, tmp_path, capsys):
    config, _, _ = tiny
    with pytest.raises(SystemExit):
        load_tool(TOOL).main([str(config), '--iters', '1', '--work-dir', str(tmp_path / 'w')])
    assert f'error: {KEY}={tmp_path}/w/pseudo_labels: ' in capsys.readouterr().err
    assert (tmp_path / 'w').is_dir()


def test_the_temporary_folder_is_removed_after_ctrl_c(tiny):
    _, _, scratch = tiny
    with pytest.raises(KeyboardInterrupt):
        with load_tool(TOOL).benchmark_folder(None) as folder:
            (Path(folder) / 'log.txt').write_text('partial')
            raise KeyboardInterrupt
    assert not list(scratch.glob('feature_cache_bench_*'))


def test_times_the_steps_on_given_pseudo_labels_and_cleans_up(tiny, tmp_path, capsys):
    config, data, scratch = tiny
    write_pseudo_labels(tmp_path / 'labels', data)
    out = tmp_path / 'result.json'
    tool = load_tool(TOOL)
    steps = []  # (cache on, batches) of each timed call

    def record(model, optim_wrapper, batches):
        steps.append((model.feature_cache is not None, len(batches)))
        return time_steps(model, optim_wrapper, batches)
    time_steps, tool.time_steps = tool.time_steps, record
    result = tool.main([str(config), '--iters', '2', '--out', str(out),
                        '--cfg-options', f'{KEY}={tmp_path / "labels"}'])
    # warm-up, the filling pass, then off and cached in turn, batch by batch
    assert steps == [(False, 1), (True, 2), (False, 1), (True, 1), (False, 1), (True, 1)]
    assert list(result) == ['config', 'iters', 'batch_size', 'seconds_per_iter', 'speedup',
                            'threads', 'random_transforms', 'machine', 'command']
    # the cached phase replays the same batches: with random crops and flips the speed-up
    # is an upper bound for later epochs, and the report says so
    assert result['random_transforms'] == ['RandomCrop', 'RandomFlip']
    assert json.loads(out.read_text()) == result
    assert result['machine'].endswith(' cores')  # the CPU it ran on, e.g. 'AMD EPYC 7B13, 2 cores'
    # the command that reproduces the file, as typed
    assert result['command'] == (f'python tools/benchmark_feature_cache.py {config} --iters 2 '
                                 f'--out {out} --cfg-options {KEY}={tmp_path / "labels"}')
    printed = capsys.readouterr().out
    assert f'2 iterations of {config} (batch 2, ' in printed
    assert 'note: the training pipeline has RandomCrop, RandomFlip' in printed
    assert not list(scratch.glob('feature_cache_bench_*'))


def test_each_timed_step_waits_for_the_models_gpu(monkeypatch):
    # perf_counter around train_step timed the launch of a GPU step, not its work (the
    # cached path's .cpu() then waited for the uncached step's kernels)
    import torch

    tool = load_tool(TOOL)
    events = []

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def train_step(self, batch, optim_wrapper):
            events.append('step')

    monkeypatch.setattr(tool, '_synchronize', lambda device: events.append(f'sync {device}'))
    tool.time_steps(Model(), None, [1, 2])
    assert events == ['sync cpu', 'step', 'step', 'sync cpu']


def test_random_transforms_are_named_by_a_string_scoped_or_a_class_type():
    # a class type (pure-Python configs) was named "RandomResize'>"
    from mmcv.transforms import RandomResize
    tool = load_tool(TOOL)
    pipeline = [dict(type='LoadImageFromFile'), dict(type=RandomResize),
                dict(type='mmseg.RandomFlip'), dict(type='PhotoMetricDistortion')]
    assert tool.random_transforms(dict(dataset=dict(pipeline=pipeline))) == [
        'PhotoMetricDistortion', 'RandomFlip', 'RandomResize']
