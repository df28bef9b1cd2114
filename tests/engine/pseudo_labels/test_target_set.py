"""Labelling a whole target set into the cache: complete, resumable, reproducible."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_uda import tiny_uda_config, write_scene, write_tiny_uda_data
from labelling_run import run_labelling
from PIL import Image

from mmseg_saot.engine.pseudo_labels import PseudoLabelInputError
from mmseg_saot.utils.errors import UserInputError

SCRIPT = Path(__file__).with_name('labelling_run.py')


def cache_files(cache: Path) -> dict:
    """Relative path -> bytes of every label and confidence PNG."""
    return {str(p.relative_to(cache)): p.read_bytes()
            for p in sorted(cache.rglob('*.png'))}


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return write_tiny_uda_data(tmp_path_factory.mktemp('data'), num_target=12)


@pytest.fixture(scope='module')
def config(data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('cfg') / 'tiny.py'
    path.write_text(tiny_uda_config(data))
    return path


@pytest.fixture(scope='module')
def reference(config, tmp_path_factory) -> Path:
    """The cache of one uninterrupted run."""
    work_dir = tmp_path_factory.mktemp('reference')
    run_labelling(config, work_dir)
    return work_dir / 'pseudo_labels'


def test_every_target_image_gets_labels_and_confidence_at_its_size(reference, data):
    images = sorted((data / 'cs' / 'leftImg8bit' / 'train').rglob('*.png'))
    assert len(images) == 12
    for image in images:
        key = image.relative_to(data / 'cs' / 'leftImg8bit' / 'train').with_suffix('')
        labels = np.asarray(Image.open(reference / 'labels' / f'{key}.png'))
        confidence = np.asarray(Image.open(reference / 'confidence' / f'{key}.png'))
        assert labels.shape == confidence.shape == Image.open(image).size[::-1]
        assert set(np.unique(labels)) <= set(range(19)) | {255}
        assert (labels != 255).mean() > 0.5  # most pixels keep a label
    manifest = json.loads((reference / 'manifest.json').read_text())
    assert manifest['complete'] and manifest['num_images'] == 12
    assert manifest['fingerprint']['backbone'] == 'vit_small_patch14_dinov2'
    assert len(manifest['fingerprint']['weights_checksum']) == 64
    histogram = {int(k): v for k, v in manifest['class_histogram'].items()}
    assert sum(histogram.values()) > 0 and histogram[0] > 0  # road is found
    stats = json.loads((reference / 'sample_class_stats.json').read_text())
    assert len(stats) == 12 and all(sum(r['counts'].values()) == 56 * 84 for r in stats)


def test_rerun_reuses_a_complete_cache_without_rewriting(config, reference, tmp_path):
    work_dir = tmp_path / 'run'
    shutil.copytree(reference, work_dir / 'pseudo_labels')
    before = {p: p.stat().st_mtime_ns for p in (work_dir / 'pseudo_labels').rglob('*.png')}
    run_labelling(config, work_dir)
    after = {p: p.stat().st_mtime_ns for p in (work_dir / 'pseudo_labels').rglob('*.png')}
    assert before == after


def test_reusing_a_cache_repeats_its_warning_of_images_without_labels(config, reference,
                                                                     tmp_path, monkeypatch):
    # the first run warned of images whose pixels are all ignore; a rerun (and training
    # on the cache) said only "reusing the complete cache"
    work_dir = tmp_path / 'run'
    shutil.copytree(reference, work_dir / 'pseudo_labels')
    manifest_path = work_dir / 'pseudo_labels' / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    manifest.update(all_ignore=['aachen/a_0'], num_all_ignore=1)  # not in the hash
    manifest_path.write_text(json.dumps(manifest))
    from mmseg_saot.engine.pseudo_labels import target_set
    logged = []
    monkeypatch.setattr(target_set, '_log', lambda message, level=0: logged.append(message))
    run_labelling(config, work_dir)
    out = '\n'.join(logged)
    assert 'reusing the complete cache' in out
    assert "1 images got no label at all (every pixel ignore), e.g. ['aachen/a_0']" in out


def test_a_feature_store_gives_the_same_cache_and_serves_a_second_run(config, reference,
                                                                      tmp_path):
    store = tmp_path / 'features'
    options = {'custom_hooks.0.feature_store_dir': str(store)}
    run_labelling(config, tmp_path / 'first', cfg_options=options)
    entries = {p: p.stat().st_mtime_ns for p in store.rglob('*.pt')}
    assert len(entries) == 4 + 12  # the source bank and every target image
    run_labelling(config, tmp_path / 'second', cfg_options=options)
    assert {p: p.stat().st_mtime_ns for p in store.rglob('*.pt')} == entries  # read, not redone
    for run in ('first', 'second'):
        assert cache_files(tmp_path / run / 'pseudo_labels') == cache_files(reference)


@pytest.mark.parametrize('labeler_file', ['deleted', 'truncated'])
def test_partial_cache_is_completed_to_the_uninterrupted_result(config, reference,
                                                                tmp_path, labeler_file):
    work_dir = tmp_path / 'run'
    cache = work_dir / 'pseudo_labels'
    shutil.copytree(reference, cache)
    saved = cache / 'labeler.pth'  # even the fitted labeller is refitted identically
    if labeler_file == 'deleted':
        saved.unlink()
    else:  # a disk error: unreadable, refitted as if deleted
        saved.write_bytes(saved.read_bytes()[:1000])
    for label in sorted((cache / 'labels').rglob('*.png'))[::2]:
        label.unlink()
    manifest = json.loads((cache / 'manifest.json').read_text())
    manifest['complete'] = False
    (cache / 'manifest.json').write_text(json.dumps(manifest))
    run_labelling(config, work_dir)
    assert cache_files(cache) == cache_files(reference)


def _being_written(work_dir: Path) -> list:
    return [p for p in (work_dir / 'pseudo_labels').rglob('*.tmp')
            if p.parent.name == 'demo']  # a label or confidence PNG's temporary


def test_kill_9_mid_labelling_then_rerun_loses_nothing(python, config, reference,
                                                       tmp_path):
    work_dir = tmp_path / 'killed'
    labels = work_dir / 'pseudo_labels' / 'labels'
    process = subprocess.Popen([python, str(SCRIPT), str(config), str(work_dir), '0.5'],
                               cwd=SCRIPT.parent, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # every write pauses halfway (labelling_run.py): kill in the middle of a file
    while len(list(labels.rglob('*.png'))) < 3 or not _being_written(work_dir):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert _being_written(work_dir)  # the cut file is a temporary, never a PNG
    written = cache_files(work_dir / 'pseudo_labels')
    assert 3 <= len([k for k in written if k.startswith('labels')]) < 12
    run_labelling(config, work_dir)
    final = cache_files(work_dir / 'pseudo_labels')
    assert all(final[name] == content for name, content in written.items())
    assert final == cache_files(reference)
    assert not list((work_dir / 'pseudo_labels').rglob('*.tmp*'))


def test_two_gloo_ranks_label_their_shards_into_the_same_cache(python, config, reference,
                                                              tmp_path):
    work_dir = tmp_path / 'ddp'
    result = subprocess.run([python, str(SCRIPT), '--ddp', '2', str(config), str(work_dir)],
                            cwd=SCRIPT.parent, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'rank 0: complete=True' in result.stdout and 'rank 1: complete=True' in result.stdout
    # rank 0 labels its half of the 12 images (rank 1 logs errors only)
    assert 'rank 0 labels 6' in result.stdout + result.stderr
    assert cache_files(work_dir / 'pseudo_labels') == cache_files(reference)


def test_a_rank_that_cannot_see_rank_0s_cache_says_the_folder_must_be_shared(
        config, tmp_path, monkeypatch):
    # on two machines without a shared pseudo_label_dir, rank 1 labelled into its own
    # folder and then failed on a missing labeler.pth (FileNotFoundError)
    from mmseg_saot.engine.pseudo_labels import target_set
    monkeypatch.setattr(target_set, 'get_dist_info', lambda: (1, 2))
    monkeypatch.setattr(target_set, 'barrier', lambda: None)
    work_dir = tmp_path / 'node1'
    cache = work_dir / 'pseudo_labels'
    with pytest.raises(PseudoLabelInputError, match=re.escape(
            f'pseudo-labels: rank 1 does not see the cache manifest rank 0 wrote in {cache}')
            + '.*one folder every rank shares'):
        run_labelling(config, work_dir)
    assert not (cache / 'labels').exists()  # nothing labelled into a folder no one reads


def test_changed_settings_move_the_old_cache_aside(config, reference, tmp_path, monkeypatch):
    from mmseg_saot.datasets import pseudo_label_cache
    logged = []
    monkeypatch.setattr(pseudo_label_cache, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    work_dir = tmp_path / 'run'
    shutil.copytree(reference, work_dir / 'pseudo_labels')
    run_labelling(config, work_dir,
                  cfg_options={'custom_hooks.0.labeler.confidence_quantile': 0.5})
    stale = list(work_dir.glob('pseudo_labels.stale-*'))
    assert len(stale) == 1 and cache_files(stale[0]) == cache_files(reference)
    assert logged == [f'{work_dir}/pseudo_labels held pseudo-labels of other settings (config '
                      f'hash {stale[0].name[-8:]}; changed: labeler); moved them to {stale[0]} '
                      'and labelling again.']
    new = json.loads((work_dir / 'pseudo_labels' / 'manifest.json').read_text())
    assert new['complete']
    assert new['fingerprint']['labeler']['confidence_quantile'] == 0.5


def _edit(image: Path) -> None:
    """Change ``image`` in place, as an edit under the same name does."""
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    before = os.stat(image).st_mtime_ns
    os.utime(image, ns=(before + 10**9, before + 10**9))  # a later edit, whatever the clock


def test_an_edited_target_image_is_labelled_again_alone(tmp_path, monkeypatch):
    # one hash over every target file moved the whole cache aside for one edited image
    # (hours of labelling on a large set, after replacing one corrupt file)
    from mmseg_saot.datasets import pseudo_label_cache
    logged = []
    monkeypatch.setattr(pseudo_label_cache, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    data = write_tiny_uda_data(tmp_path / 'data', num_target=3)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    one_mean_image = {'custom_hooks.0.target_mean_images': 1}  # image 0 fixes the mean
    run_labelling(config, tmp_path / 'run', cfg_options=one_mean_image)
    cache = tmp_path / 'run' / 'pseudo_labels'
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
              for p in sorted((cache / 'labels').rglob('*.png'))}
    images = sorted((data / 'cs' / 'leftImg8bit' / 'train').rglob('*.png'))
    _edit(images[2])
    manifest = run_labelling(config, tmp_path / 'run', cfg_options=one_mean_image)
    assert manifest['complete'] and manifest['num_images'] == 3
    assert not list((tmp_path / 'run').glob('pseudo_labels.stale-*'))
    assert len(logged) == 1 and logged[0].startswith(
        '1 target image(s) changed since they were labelled (size or modification time), '
        f'e.g. demo/{images[2].stem}: labelling it again')
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
             for p in sorted((cache / 'labels').rglob('*.png'))}
    relabelled = [name for name in before if after[name][1] != before[name][1]]
    assert relabelled == [images[2].stem + '.png']
    assert after[images[2].stem + '.png'][0] != before[images[2].stem + '.png'][0]  # flipped
    # an image that fixes the labeller's target mean changes every label
    _edit(images[0])
    run_labelling(config, tmp_path / 'run', cfg_options=one_mean_image)
    assert 'changed: target_mean_files_checksum);' in logged[-1]
    assert len(list((tmp_path / 'run').glob('pseudo_labels.stale-*'))) == 1


def test_an_image_listed_twice_is_labelled_and_counted_once(tmp_path, monkeypatch):
    # a RepeatDataset target lists each image twice under one key: it was labelled
    # twice (by two ranks at once under DDP) and counted twice in the manifest
    from mmengine.config import Config

    from mmseg_saot.engine.pseudo_labels import target_set
    labelled = []
    real_label_image = target_set.label_image

    def label_image(labeler, record, patch):
        labelled.append(record.img_path)
        return real_label_image(labeler, record, patch)

    monkeypatch.setattr(target_set, 'label_image', label_image)
    data = write_tiny_uda_data(tmp_path / 'data', num_target=3)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    inner = Config.fromfile(str(config)).train_dataloader.dataset.target.dataset.to_dict()
    repeated = dict(_delete_=True, type='RepeatDataset', times=2, dataset=inner)
    manifest = run_labelling(config, tmp_path / 'run', cfg_options={
        'train_dataloader.dataset.target.dataset': repeated})
    assert len(labelled) == len(set(labelled)) == 3
    assert manifest['num_images'] == 3
    stats = json.loads((tmp_path / 'run' / 'pseudo_labels' /
                        'sample_class_stats.json').read_text())
    assert len(stats) == 3
    label_maps = [np.asarray(Image.open(p))
                  for p in (tmp_path / 'run' / 'pseudo_labels' / 'labels').rglob('*.png')]
    assert len(label_maps) == 3
    labelled_pixels = sum(int((m != 255).sum()) for m in label_maps)
    assert sum(manifest['class_histogram'].values()) == labelled_pixels


def test_empty_target_set_is_a_clear_error(tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_target=0)
    (data / 'cs' / 'leftImg8bit' / 'train').mkdir(parents=True, exist_ok=True)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    # named when the training set is built, before any feature is computed
    with pytest.raises(UserInputError, match=re.escape(
            "SourceTargetDataset: the target dataset is empty (CityscapesDataset, "
            f"data_root='{data / 'cs'}', img_path='{data / 'cs' / 'leftImg8bit' / 'train'}')")):
        run_labelling(config, tmp_path / 'run')


def test_corrupt_target_image_is_named(tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_target=3)
    bad = sorted((data / 'cs' / 'leftImg8bit' / 'train').rglob('*.png'))[1]
    bad.write_bytes(b'not a png at all')
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    with pytest.raises(PseudoLabelInputError, match=bad.name):
        run_labelling(config, tmp_path / 'run')


def test_all_ignore_source_labels_are_a_clear_error(tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_target=2)
    for label in (data / 'gta5' / 'labels').glob('*.png'):
        Image.fromarray(np.full((56, 84), 255, np.uint8)).save(label)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    with pytest.raises(PseudoLabelInputError, match='entirely ignore'):
        run_labelling(config, tmp_path / 'run')


def test_sources_lacking_a_class_and_targets_of_other_sizes(tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data', num_target=2)
    for label in (data / 'gta5' / 'labels').glob('*.png'):  # no car in any source
        arr = np.asarray(Image.open(label)).copy()
        arr[arr == 13] = 2
        Image.fromarray(arr).save(label)
    rng = np.random.default_rng(1)
    odd = data / 'cs' / 'leftImg8bit' / 'train' / 'demo' / 'demo_000009_000019_leftImg8bit.png'
    write_scene(odd, data / 'cs' / 'gtFine' / 'train' / 'demo' /
                'demo_000009_000019_gtFine_labelTrainIds.png', rng, shift=30, size=(70, 60))
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    manifest = run_labelling(config, tmp_path / 'run')
    assert manifest['complete'] and manifest['num_images'] == 3
    assert manifest['class_histogram']['13'] == 0  # no source car: no target car
    odd_labels = tmp_path / 'run' / 'pseudo_labels' / 'labels' / 'demo' / (odd.stem + '.png')
    assert np.asarray(Image.open(odd_labels)).shape == (70, 60)


def test_feature_memo_stops_at_its_budget():
    import torch

    from mmseg_saot.engine.pseudo_labels.features import FeatureMemo, ImageFeatures
    memo = FeatureMemo(max_bytes=3 * 4 * 10)  # three 10-float feature maps
    for i in range(5):
        memo[('img', i)] = ImageFeatures(index=i, img_path=f'{i}.png', feats=torch.zeros(10),
                                         img_shape=(1, 1), ori_shape=(1, 1))
    assert len(memo) == 3 and memo.num_bytes == 120


def test_a_labeller_of_another_version_is_named_not_a_load_traceback(tmp_path):
    # completing a partial cache loads the saved labeller strictly: one saved by another
    # version of SAOTLabeler (a new buffer) failed with a raw load_state_dict RuntimeError
    import torch
    data = write_tiny_uda_data(tmp_path / 'data', num_target=2)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    run_labelling(config, tmp_path / 'run')
    cache = tmp_path / 'run' / 'pseudo_labels'
    state = torch.load(cache / 'labeler.pth', weights_only=True)
    state['a_buffer_of_another_version'] = torch.zeros(3)
    torch.save(state, cache / 'labeler.pth')
    next((cache / 'labels').rglob('*.png')).unlink()  # one image left to label
    with pytest.raises(PseudoLabelInputError, match=r'labeler.pth holds a labeller this '
                       r'version of SAOTLabeler cannot load \(it differs in '
                       r'a_buffer_of_another_version\).*Move that folder aside'):
        run_labelling(config, tmp_path / 'run')
