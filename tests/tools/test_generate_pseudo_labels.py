"""tools/generate_pseudo_labels.py on tiny data: table, JSON, overlays, the cache."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from tiny_uda import tiny_uda_config, write_tiny_uda_data
from PIL import Image

TOOL = str(Path(__file__).resolve().parents[2] / 'tools' / 'generate_pseudo_labels.py')


@pytest.fixture(scope='module')
def generated(python, tmp_path_factory):
    data = write_tiny_uda_data(tmp_path_factory.mktemp('data'), num_target=4)
    config = tmp_path_factory.mktemp('generated_cfg', numbered=False) / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    work_dir = tmp_path_factory.mktemp('work')
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(work_dir),
                             '--methods', 'nn', 'ot_unbalanced', 'saot', '--num-overlays', '2',
                             '--device', 'cpu', '--oracle'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir, result.stdout


def test_a_rerun_reuses_the_cache_of_a_backbone_without_weights(python, generated, tmp_path):
    # seeded like tools/train.py's Runner: the random ViT is the same in every run, so its
    # cache is reused (and train.py reuses it too) instead of being moved aside as stale
    work_dir, _ = generated
    config = Path(work_dir).parent / 'generated_cfg' / 'tiny.py'  # the fixture's
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(work_dir),
                             '--methods', 'nn', '--num-overlays', '0', '--device', 'cpu',
                             '--out-dir', str(tmp_path)],  # the fixture's table stays
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'reusing the complete cache {work_dir}/pseudo_labels' in result.stdout + \
        result.stderr
    assert not list(Path(work_dir).glob('pseudo_labels.stale-*'))
    assert f'table and JSON in {tmp_path}\n' in result.stdout  # no overlays asked for


def test_prints_a_per_class_table_for_every_method(generated):
    _, stdout = generated
    header = next(line for line in stdout.splitlines() if line.startswith('class'))
    assert header.split()[1:] == ['nn', 'ot_unbalanced', 'saot', 'patch_oracle']
    assert any(line.startswith('road') for line in stdout.splitlines())
    assert 'mIoU (all)' in stdout and 'saot / nn = ' in stdout
    assert 'patch_oracle (the true patch labels, upsampled alike) = ' in stdout


def test_the_patch_oracle_bounds_every_method(generated):
    work_dir, _ = generated
    report = json.loads((work_dir / 'pseudo_label_eval' / 'pseudo_label_miou.json').read_text())
    oracle = report['methods']['patch_oracle']
    assert oracle['miou'] > 60  # road and building are whole patches; 18 x 28 px cars are not
    assert all(r['miou'] <= oracle['miou'] for r in report['methods'].values())
    assert oracle['kept_percent'] > 95  # no confidence filter


def test_json_holds_per_class_iou_and_the_cache_matches(generated):
    work_dir, _ = generated
    report = json.loads((work_dir / 'pseudo_label_eval' / 'pseudo_label_miou.json').read_text())
    assert report['num_images'] == 4 and report['split'] == 'train'
    assert set(report['methods']) == {'nn', 'ot_unbalanced', 'saot', 'patch_oracle'}
    saot = report['methods']['saot']
    assert 0 <= saot['miou'] <= 100 and saot['per_class_iou']['road'] is not None
    assert saot['per_class_iou']['bicycle'] is None  # absent from the ground truth
    assert saot['cache_mismatches'] == 0  # the training cache = this tool's labels
    manifest = json.loads((work_dir / 'pseudo_labels' / 'manifest.json').read_text())
    assert manifest['complete'] and manifest['num_images'] == 4


def test_overlays_show_image_label_confidence_and_truth(generated):
    work_dir, stdout = generated
    assert f'overlays in {work_dir}/pseudo_label_eval/overlays' in stdout
    overlays = sorted((work_dir / 'pseudo_label_eval' / 'overlays' / 'saot').glob('*.png'))
    assert len(overlays) == 2
    panel = np.asarray(Image.open(overlays[0]))
    assert panel.shape == (56, 4 * 84 + 3 * 4, 3)  # four panels with 4 px gaps


def test_a_config_without_the_hook_is_a_clear_message(python, tmp_path):
    config = tmp_path / 'plain.py'
    config.write_text("_base_ = ['mmseg::_base_/default_runtime.py']\n"
                      "train_dataloader = dict(dataset=dict(type='CityscapesDataset'))\n")
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(tmp_path / 'w')],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert 'no SAOTPseudoLabelHook' in result.stderr and 'Traceback' not in result.stderr


def test_val_split_scores_the_val_images_and_leaves_the_cache_alone(python, tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_target=2, num_val=3)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    work_dir = tmp_path / 'work'
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(work_dir),
                             '--methods', 'nn', '--split', 'val', '--num-overlays', '0',
                             '--device', 'cpu'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((work_dir / 'pseudo_label_eval_val' / 'pseudo_label_miou.json')
                        .read_text())
    assert report['num_images'] == 3  # the val split, not the 2 train images
    assert report['split'] == 'val'  # recorded for tools/summarize_uda.py
    assert report['dataset']['img_path'].endswith('val')
    assert not (work_dir / 'pseudo_labels' / 'manifest.json').exists()


def test_val_split_without_a_val_dataloader_is_a_clear_message(python, tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_target=2, num_val=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data) + '\nval_dataloader = None\nval_cfg = None\n'
                      'val_evaluator = None\n')
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(tmp_path / 'w'),
                             '--methods', 'nn', '--split', 'val', '--device', 'cpu'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]  # was an AttributeError traceback
    assert 'Traceback' not in result.stderr
    assert f'--split val: {config} has no val_dataloader' in result.stderr


def refused(python, tmp_path, *args, prepare=None) -> str:
    """Run the tool on fresh tiny data (2 train and 1 val targets; ``prepare(data)``
    edits it first) with ``--methods nn`` and ``args``; expect a one-line refusal (exit
    2, no traceback) and return stderr."""
    data = write_tiny_uda_data(tmp_path / 'data', num_target=2, num_val=1)
    if prepare is not None:
        prepare(data)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(tmp_path / 'w'),
                             '--methods', 'nn', '--device', 'cpu', *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    return result.stderr


def test_a_head_of_another_class_count_is_named_before_any_labelling(python, tmp_path):
    # tools/train.py refused it; here the whole target set was labelled first and the
    # scoring then failed with IndexError (or the cache was moved aside by the next run)
    stderr = refused(python, tmp_path, '--cfg-options', 'model.decode_head.num_classes=6',
                     'custom_hooks.0.num_classes=6')
    assert (f'error: {tmp_path / "tiny.py"}: model.decode_head.num_classes is 6, but '
            'train_dataloader.dataset.source') in stderr
    assert not (tmp_path / 'w' / 'pseudo_labels').exists()


def test_a_source_bank_of_one_image_is_named_for_the_learned_metric(python, tmp_path):
    # the metric trains on pairs of source images: a ValueError traceback, no option named
    stderr = refused(python, tmp_path, '--cfg-options', 'custom_hooks.0.num_source_images=1')
    assert ('error: the learned metric trains on pairs of labelled source images, and the '
            'source set has 1 with a labelled patch; give SAOTPseudoLabelHook more source '
            'images (its num_source_images') in stderr


def test_ground_truth_that_is_all_ignore_is_named_not_scored_as_nan(python, tmp_path):
    # the table said mIoU nan and the JSON held NaN (which strict parsers refuse), exit 0
    def all_ignore(data):
        for path in (data / 'cs' / 'gtFine' / 'val').rglob('*_labelTrainIds.png'):
            Image.fromarray(np.full_like(np.array(Image.open(path)), 255)).save(path)

    stderr = refused(python, tmp_path, '--split', 'val', prepare=all_ignore)
    assert ('error: the ground truth of the 1 scored target images has no labelled pixel '
            '(all ignore_index=255): nothing to score') in stderr


def test_val_split_with_a_wrapped_train_target_is_a_clear_message(python, tmp_path):
    # its labelling pipeline was read from the wrapper: AttributeError traceback
    from mmengine import Config
    data = write_tiny_uda_data(tmp_path / 'data', num_target=2, num_val=1)
    (tmp_path / 'tiny.py').write_text(tiny_uda_config(data))
    cfg = Config.fromfile(str(tmp_path / 'tiny.py'))
    target = cfg.train_dataloader.dataset.target
    target.dataset = dict(type='ConcatDataset', datasets=[target.dataset])
    config = tmp_path / 'wrapped.py'
    cfg.dump(str(config))
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(tmp_path / 'w'),
                             '--methods', 'nn', '--split', 'val', '--device', 'cpu'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    assert 'that target is a ConcatDataset, which wraps other datasets' in result.stderr


def test_feature_cache_lets_a_second_run_skip_the_backbone(python, tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_source=3, num_target=2, num_val=2)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    weights = tmp_path / 'vit.pth'  # fixed weights: the same backbone in both runs
    torch.save(timm.create_model('vit_small_patch14_dinov2', num_classes=0).state_dict(),
               weights)
    reports = []
    for run in ('first', 'second'):
        result = subprocess.run([python, TOOL, str(config), '--work-dir', str(tmp_path / run),
                                 '--methods', 'nn', 'saot', '--split', 'val',
                                 '--num-overlays', '0', '--device', 'cpu',
                                 '--feature-cache', str(tmp_path / 'features'),
                                 '--cfg-options', f'model.backbone.checkpoint={weights}'],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        reports.append(json.loads((tmp_path / run / 'pseudo_label_eval_val' /
                                   'pseudo_label_miou.json').read_text()))
        line = next(ln for ln in result.stdout.splitlines() if ln.startswith('feature cache'))
        computed = 5 if run == 'first' else 0  # 3 sources + 2 val targets
        assert line.endswith(f'{5 - computed} images read, {computed} computed'), line
    for method in ('nn', 'saot'):  # the stored features are the computed ones
        first, second = (r['methods'][method] for r in reports)
        assert second['per_class_iou'] == first['per_class_iou']


def test_unlabelled_targets_are_labelled_and_not_scored(python, tmp_path):
    import shutil
    data = write_tiny_uda_data(tmp_path / 'data', num_source=3, num_target=2, num_val=1)
    shutil.rmtree(data / 'cs' / 'gtFine' / 'train')  # target images only, as in UDA
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    work_dir = tmp_path / 'work'
    command = [python, TOOL, str(config), '--work-dir', str(work_dir), '--methods', 'nn',
               '--num-overlays', '0', '--device', 'cpu']
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f'the target images have no ground truth (no label maps under '
            f'{data}/cs/gtFine/train): the pseudo-labels of the 2 target images are in '
            f'{work_dir}/pseudo_labels, not scored.') in result.stdout
    assert len(list((work_dir / 'pseudo_labels' / 'labels').rglob('*.png'))) == 2
    result = subprocess.run(command + ['--no-cache'], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert 'nothing to score the methods against' in result.stderr


def test_targets_with_some_label_maps_missing_are_named(python, tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_source=3, num_target=2, num_val=1)
    labels = sorted((data / 'cs' / 'gtFine' / 'train').rglob('*.png'))
    labels[1].unlink()
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(tmp_path / 'w'),
                             '--methods', 'nn', '--device', 'cpu'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert (f'1 of the 2 target images have no ground-truth label map (the first: '
            f'{labels[1]})') in result.stderr
    assert not (tmp_path / 'w' / 'pseudo_labels').exists()  # said before any labelling


def test_an_unreadable_cached_label_is_named_with_the_fix(python, generated, tmp_path):
    import shutil
    work_dir = tmp_path / 'work'
    shutil.copytree(generated[0], work_dir)
    broken = sorted((work_dir / 'pseudo_labels' / 'labels').rglob('*.png'))[1]
    broken.write_bytes(b'\x89PNG torn')
    config = Path(generated[0]).parent / 'generated_cfg' / 'tiny.py'  # the fixture's
    result = subprocess.run([python, TOOL, str(config), '--work-dir', str(work_dir),
                             '--methods', 'saot', '--num-overlays', '0', '--device', 'cpu'],
                            capture_output=True, text=True, timeout=600)  # checks the cache
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert f'error: the pseudo-label cache file {broken} cannot be read (' in result.stderr
    assert f'Delete {broken} and ' in result.stderr


@pytest.mark.parametrize('option', ['--out-dir', '--feature-cache'])
def test_an_output_folder_that_cannot_be_made_is_named_before_the_model_is_built(
        tmp_path, monkeypatch, capsys, option):
    # --out-dir was checked after the backbone was built (minutes for a large ViT),
    # --feature-cache only when the store opened
    from mmseg.registry import MODELS
    from tool_scripts import load_tool

    real_build = MODELS.build

    def build(cfg, *args, **kwargs):
        if 'backbone' in cfg:  # the segmentor (the hook builds its labeller to check it)
            raise AssertionError('the model was built before the output folder was checked')
        return real_build(cfg, *args, **kwargs)

    monkeypatch.setattr(MODELS, 'build', build)
    data = write_tiny_uda_data(tmp_path / 'data', num_target=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    (tmp_path / 'afile').write_text('')
    tool = load_tool('tools/generate_pseudo_labels.py')
    with pytest.raises(SystemExit) as stop:
        tool.main([str(config), '--work-dir', str(tmp_path / 'work'), '--device', 'cpu',
                   option, str(tmp_path / 'afile')])
    assert stop.value.code == 2
    assert f'{option}: {tmp_path}/afile exists and is not a folder' in capsys.readouterr().err


@pytest.mark.parametrize('flags, cache_message', [
    ([], True), (['--split', 'val'], False), (['--no-cache'], False)])
def test_an_interrupt_says_whether_the_cache_was_being_filled(tmp_path, monkeypatch, flags,
                                                              cache_message):
    # --split val and --no-cache write no cache, but a Ctrl-C said "Pseudo-labels
    # already written to the cache are kept"
    from mmseg.registry import MODELS
    from tool_scripts import load_tool
    real_build = MODELS.build

    def build(cfg, *args, **kwargs):
        if 'backbone' in cfg:
            raise KeyboardInterrupt
        return real_build(cfg, *args, **kwargs)

    monkeypatch.setattr(MODELS, 'build', build)
    data = write_tiny_uda_data(tmp_path / 'data', num_target=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    tool = load_tool('tools/generate_pseudo_labels.py')
    with pytest.raises(KeyboardInterrupt):
        tool.main([str(config), '--work-dir', str(tmp_path / 'work'), '--device', 'cpu',
                   *flags])
    said = tool.STOPPED['message']
    assert said.startswith('Pseudo-labels already written to the cache are kept') == \
        cache_message
    assert said.startswith('Nothing was written to the pseudo-label cache') != cache_message


def test_a_hook_of_another_label_space_is_named_also_when_the_hook_does_not_run(
        tmp_path, capsys):
    # --split val skips the hook's run, where num_classes is checked against the head:
    # scoring then stopped at the first pixel of a higher class, blaming label ids
    from tool_scripts import load_tool
    data = write_tiny_uda_data(tmp_path / 'data', num_target=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    tool = load_tool('tools/generate_pseudo_labels.py')
    with pytest.raises(SystemExit) as stop:
        tool.main([str(config), '--work-dir', str(tmp_path / 'work'), '--device', 'cpu',
                   '--split', 'val', '--methods', 'nn',
                   '--cfg-options', 'custom_hooks.0.num_classes=5'])
    assert stop.value.code == 2
    assert ('SAOTPseudoLabelHook: num_classes=5 but the decode head predicts 19 classes'
            in capsys.readouterr().err)
