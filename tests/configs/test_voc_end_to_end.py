"""configs/saot/voc.py end to end on generated VOC-layout data (slow: ``make test-slow``).

Labelling, two stage-1 and two stage-2 iterations, validation of both heads, with a
random ViT-S/16 in place of the paper's ViT-B/16.
"""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def write_voc(root: Path) -> Path:
    """Eight 200x260 images, one object each, in the VOC 2012 (+ SBD aug) layout."""
    voc = root / 'VOCdevkit' / 'VOC2012'
    for folder in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                   'ImageSets/Segmentation'):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f'img{i}' for i in range(8)]
    for name in names:
        label = np.zeros((200, 260), np.uint8)
        label[50:150, 60:200] = rng.integers(1, 21)
        image = np.stack([label * 10 + rng.integers(0, 40, label.shape)] * 3, -1)
        Image.fromarray(image.astype(np.uint8)).save(voc / 'JPEGImages' / f'{name}.jpg')
        for folder in ('SegmentationClass', 'SegmentationClassAug'):
            Image.fromarray(label).save(voc / folder / f'{name}.png')
    sets = voc / 'ImageSets' / 'Segmentation'
    (sets / 'train.txt').write_text('\n'.join(names[:4]))
    (sets / 'aug.txt').write_text('\n'.join(names[4:6]))  # as voc_aug.py writes them
    (sets / 'trainaug.txt').write_text('\n'.join(names[:6]))
    (sets / 'val.txt').write_text('\n'.join(names[6:]))
    return voc


@pytest.mark.slow
def test_voc_config_runs_both_stages(python, tmp_path):
    voc = write_voc(tmp_path)
    work_dir = tmp_path / 'work'
    options = [f'{key}={voc}' for key in (
        'train_dataloader.dataset.source.datasets.0.data_root',
        'train_dataloader.dataset.source.datasets.1.data_root',
        'train_dataloader.dataset.target.dataset.data_root',
        'val_dataloader.dataset.data_root', 'test_dataloader.dataset.data_root',
        'custom_hooks.0.source.data_root')] + [
        'custom_hooks.0.num_source_images=4', 'custom_hooks.2.self_training_begin=2',
        'train_cfg.max_iters=4', 'train_cfg.val_interval=2',
        'model.backbone.pretrained=False',
        'model.backbone.model_name=vit_small_patch16_224.dino',
        'model.decode_head.in_channels=[384,384,384,384]',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=1',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'train_dataloader.sampler.min_pixels=100']
    result = subprocess.run([python, str(REPO / 'tools' / 'train.py'),
                             str(REPO / 'configs' / 'saot' / 'voc.py'), '--work-dir',
                             str(work_dir), '--cfg-options', *options],
                            capture_output=True, text=True, timeout=1800)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'stage 2 (EMA-teacher self-training) begins at iteration 2' in log
    record = json.loads((work_dir / 'eval' / 'iter_4.json').read_text())
    assert len(record['teacher']['per_class_iou']) == 21  # VOC's label space
