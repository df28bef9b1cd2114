# PASCAL VOC 2012 train(+aug) -> val with a frozen ViT-B/16 (paper: 47.5
# mIoU): labels are transferred from the labelled train+aug images to the val
# images, which are then the unlabelled target and the benchmark. DINOv2 has
# only /14 models, so the paper's "ViT-B/16" is taken to be DINO v1 (timm:
# vit_base_patch16_224.dino). The same three steps as gta2cs.py: SAOT
# pseudo-labels, stage 1 on them, stage 2 EMA-teacher self-training.
_base_ = [
    '../_base_/uda/ema_self_training.py',  # frozen ViT + student/teacher heads
    '../_base_/datasets/voc12aug.py',  # source train+aug, target val
    '../_base_/uda/saot_pseudo_labels.py',  # SAOT labeller settings
    '../_base_/schedules/head_20k.py',
    '../_base_/default_runtime.py',
]
# N1: iterations on SAOT pseudo-labels (our choice); stage 2 runs from N1 to
# train_cfg.max_iters = 20000 (schedules/head_20k.py: AdamW, poly decay)
stage1_iters = 10000
voc_root = 'data/VOCdevkit/VOC2012'
label_scale = (512, 512)  # labelling resolution: 32x32 patches of 16 px
data_preprocessor = dict(size_divisor=16,  # ViT-B/16 patch size
                         test_cfg=dict(size_divisor=16))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(model_name='vit_base_patch16_224.dino'),  # paper: ViT-B/16
    decode_head=dict(in_channels=[768, 768, 768, 768],  # ViT-B embed_dim
                     num_classes=21))  # VOC: 20 classes + background
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
# target crops + pseudo-labels + confidences (geometric changes only: also the
# teacher's weak view in stage 2)
pseudo_label_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='LoadPixelWeights'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputsWithWeights'),
]
voc_val_images = dict(
    type='PascalVOCDataset',
    data_root=voc_root,
    # seg_map_path only scores the pseudo-labels offline; training never reads it
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
    ann_file='ImageSets/Segmentation/val.txt',
    pipeline=target_label_pipeline)
train_dataloader = dict(
    batch_size=4,  # per GPU: 4 source + 4 target crops
    # DAFormer's min_pixels=3000 is for 2048x1024 Cityscapes labels (0.14 %); VOC's
    # pseudo-labels are ~500x375, so the same share is ~270 px (3000 would drop
    # bottles, chairs and plants from the rare-class sampling)
    sampler=dict(type='ClassBalancedSampler', temperature=0.01, min_pixels=270,
                 _delete_=True),
    dataset=dict(
        _delete_=True,
        type='SourceTargetDataset',
        source=dict(type='ConcatDataset',
                    datasets=[{{_base_.dataset_train}}, {{_base_.dataset_aug}}]),
        target=dict(
            type='PseudoLabelDataset',
            dataset=voc_val_images,
            pseudo_label_dir={{_base_.pseudo_label_dir}},
            pipeline=pseudo_label_train_pipeline)))
custom_hooks = [
    dict(
        type='SAOTPseudoLabelHook',
        source=dict(
            type='PascalVOCDataset',
            data_root=voc_root,
            data_prefix=dict(img_path='JPEGImages',
                             seg_map_path='SegmentationClassAug'),
            # VOC train + SBD aug in one list (tools/dataset_converters/voc_aug.py)
            ann_file='ImageSets/Segmentation/trainaug.txt',
            pipeline=source_label_pipeline),
        labeler={{_base_.saot_labeler}},
        num_classes=21,  # VOC: 20 classes + background
        num_source_images=1000,  # source bank: 1000 evenly spaced train+aug images
        batch_size=8,
        feature_index=-1),
    {{_base_.ema_teacher_hook}},
    dict(type='UDAStageHook', self_training_begin=stage1_iters),
]
val_cfg = {{_base_.val_loop}}
val_evaluator = {{_base_.class_iou_evaluator}}
test_evaluator = val_evaluator
