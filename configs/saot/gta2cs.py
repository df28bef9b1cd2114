# GTA5 -> Cityscapes with a frozen DINOv2 ViT-L/14 (paper, Table 1).
# Stage so far: SAOT pseudo-labels on the Cityscapes train images (stage 1 of
# the decoder), the MLP head trained on them with per-pixel confidence weights,
# evaluated on Cityscapes val.
_base_ = [
    '../_base_/models/dinov2_mlp.py',  # frozen ViT-L/14 + MLP head
    '../_base_/datasets/gta5.py',  # source: GTA5
    '../_base_/datasets/cityscapes.py',  # target: Cityscapes val at 518x1036
    '../_base_/uda/saot_pseudo_labels.py',  # SAOT labeller settings
    '../_base_/schedules/head_20k.py',
    '../_base_/default_runtime.py',
]
label_scale = (1036, 518)  # labelling resolution: 37x74 patches (paper)
# what the labeller reads: whole images at one fixed size (one patch grid)
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
crop_size = (518, 518)  # 37x37 patches
# the head trains on target images + pseudo-labels, weighted by confidence
pseudo_label_train_pipeline = [
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
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='PseudoLabelDataset',
        dataset=dict(
            type='CityscapesDataset',
            data_root='data/cityscapes',
            # seg_map_path (gtFine/train) only scores the pseudo-labels in
            # tools/generate_pseudo_labels.py; training never reads it
            data_prefix=dict(img_path='leftImg8bit/train',
                             seg_map_path='gtFine/train'),
            pipeline=target_label_pipeline),
        pseudo_label_dir={{_base_.pseudo_label_dir}},
        pipeline=pseudo_label_train_pipeline))
custom_hooks = [
    dict(
        type='SAOTPseudoLabelHook',
        source=dict(
            type='GTA5Dataset',
            data_root='data/gta5',
            data_prefix=dict(img_path='images', seg_map_path='labels'),
            pipeline=source_label_pipeline),
        labeler={{_base_.saot_labeler}},
        num_source_images=1000,  # source bank: 1000 evenly spaced GTA5 frames
        batch_size=8,  # images per backbone call while labelling
        feature_index=-1),  # the labeller reads the last ViT block
]
