"""Tiny two-domain data and a config on it, for pseudo-labelling and training tests.

A plain module (not a conftest: test folders have conftests of their own, and
``from conftest import`` would pick whichever was imported first).
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


TINY_SIZE = (56, 84)  # H, W: 4x6 patches of 14 px


def write_scene(image_path: Path, label_path: Path, rng, shift: int = 0,
                size=TINY_SIZE) -> None:
    """A tiny street-like image (building top, road bottom, a car) and its labels.

    ``shift`` moves every colour (a crude domain shift).
    """
    import cv2
    import numpy as np
    height, width = size
    label = np.full((height, width), 2, np.uint8)  # building
    label[height // 2:] = 0  # road
    top = int(rng.integers(height // 4, height // 2))
    left = int(rng.integers(0, width // 2))
    label[top:top + height // 3, left:left + width // 3] = 13  # car
    colours = np.zeros((256, 3), np.int64)
    colours[[0, 2, 13]] = [[90, 90, 90], [40, 120, 200], [200, 30, 30]]
    image = colours[label] + shift + rng.integers(-25, 25, (height, width, 3))
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(image_path), np.clip(image, 0, 255).astype(np.uint8))
    cv2.imwrite(str(label_path), label)


def write_tiny_uda_data(root: Path, num_source: int = 4, num_target: int = 6,
                        num_val: int = 2) -> Path:
    """GTA5-layout sources and Cityscapes-layout target train/val under ``root``."""
    import numpy as np
    rng = np.random.default_rng(0)
    for i in range(num_source):
        write_scene(root / 'gta5' / 'images' / f'{i:05d}.png',
                    root / 'gta5' / 'labels' / f'{i:05d}_labelTrainIds.png', rng)
    for split, count in (('train', num_target), ('val', num_val)):
        for i in range(count):
            name = f'demo_{i:06d}_000019'
            write_scene(root / 'cs' / 'leftImg8bit' / split / 'demo' / f'{name}_leftImg8bit.png',
                        root / 'cs' / 'gtFine' / split / 'demo' /
                        f'{name}_gtFine_labelTrainIds.png', rng, shift=30)
    return root


def tiny_uda_config(data_root: Path, stage1_iters: int = 3, **labeler) -> str:
    """Text of a config on :func:`write_tiny_uda_data`: demo.py with a random ViT-S.

    Six iterations: SAOT pseudo-labels, stage 1 for ``stage1_iters``, then stage 2.
    """
    labeler_cfg = dict(type='SAOTLabeler', method='saot', metric_steps=5, metric_patches=16,
                       metric_rank=4, num_neighbors=2, num_prototypes=2)
    labeler_cfg.update(labeler)
    return f'''
_base_ = [{str(REPO_ROOT / 'configs' / 'saot' / 'demo.py')!r}]
model = dict(
    backbone=dict(checkpoint=None, out_indices=1),
    decode_head=dict(in_channels=[384], in_index=[0], channels=16),  # demo's dropout 0.1
    feature_cache_dir=None)
source_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                   dict(type='Resize', scale=(84, 56), keep_ratio=False),
                   dict(type='PackSegInputs')]
source_train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                         dict(type='RandomCrop', crop_size=(42, 42)),
                         dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
target_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='LoadPixelWeights'),
                  dict(type='RandomCrop', crop_size=(42, 42)),
                  dict(type='RandomFlip', prob=0.5),
                  dict(type='PackSegInputsWithWeights')]
source_set = dict(type='GTA5Dataset', data_root={str(data_root / 'gta5')!r},
                  data_prefix=dict(img_path='images', seg_map_path='labels'))
train_dataloader = dict(batch_size=2, num_workers=1, persistent_workers=True,
    sampler=dict(min_pixels=10),
    dataset=dict(
        source=dict(source_set, pipeline=source_train_pipeline),
        target=dict(dataset=dict(data_root={str(data_root / 'cs')!r},
                                 pipeline=target_pipeline),
                    pipeline=train_pipeline)))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(
    data_root={str(data_root / 'cs')!r},
    pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
              dict(type='PackSegInputs')]))
test_dataloader = val_dataloader
custom_hooks = [dict(type='SAOTPseudoLabelHook',
    source=dict(source_set, pipeline=source_pipeline),
    labeler={labeler_cfg!r}, num_source_images=None, batch_size=4,
    target_mean_images=4),
    dict(type='EMATeacherHook', momentum=0.1),
    dict(type='UDAStageHook', self_training_begin={stage1_iters})]
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
train_cfg = dict(max_iters=6, val_interval=3)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=10))
'''
