# GTA5 -> Cityscapes with a frozen DINOv2 ViT-L/14 (paper, Table 1): the full
# SAOT pipeline in one run,
#   python tools/train.py configs/saot/gta2cs.py
# 1. SAOTPseudoLabelHook labels the Cityscapes train images before the first
#    iteration (SAOT: learned metric + prototype prior + unbalanced OT);
# 2. stage 1 (iterations [0, N1)): the MLP head learns GTA5 labels and the
#    SAOT pseudo-labels, weighted by their confidence;
# 3. stage 2 (iterations [N1, N1 + N2)): EMA-teacher self-training.
# In both stages target images are drawn by class-balanced sampling of the
# pseudo-labels' classes (train_dataloader.sampler, from the first iteration).
# The teacher head is evaluated on Cityscapes val (the student too).
_base_ = [
    '../_base_/uda/ema_self_training.py',  # frozen ViT-L/14 + student/teacher heads
    '../_base_/datasets/gta5.py',  # source: GTA5
    '../_base_/datasets/cityscapes.py',  # target: Cityscapes val at 518x1036
    '../_base_/uda/saot_pseudo_labels.py',  # SAOT labeller settings
    '../_base_/schedules/head_20k.py',
    '../_base_/default_runtime.py',
]
# N1: iterations on SAOT pseudo-labels (our choice); stage 2 runs from N1 to
# train_cfg.max_iters = 20000 (schedules/head_20k.py: AdamW, poly decay)
stage1_iters = 10000
label_scale = (1036, 518)  # labelling resolution: 37x74 patches (paper)
# training crops of at most 37x37 patches, source and target alike (a resize
# below 518 px high, ratio_range < 1, gives a lower crop: MMSeg's RandomCrop
# does not pad; the preprocessor pads it to whole patches with ignore labels)
crop_size = (518, 518)
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
# target crops + pseudo-labels + confidences; geometric changes only: this
# crop is also the teacher's weak view in stage 2
pseudo_label_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # the pseudo-label PNG
    dict(type='LoadPixelWeights'),  # its confidence PNG
    dict(type='RandomResize', scale=label_scale, ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputsWithWeights'),
]
train_dataloader = dict(
    batch_size=2,  # per GPU: 2 source + 2 target crops (DAFormer: 2 + 2)
    sampler={{_base_.class_balanced_sampler}},
    dataset=dict(
        _delete_=True,
        type='SourceTargetDataset',
        source=dict(
            type='GTA5Dataset',
            data_root='data/gta5',
            data_prefix=dict(img_path='images', seg_map_path='labels'),
            pipeline={{_base_.gta5_train_pipeline}}),
        target=dict(
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
            pipeline=pseudo_label_train_pipeline)))
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
    {{_base_.ema_teacher_hook}},
    dict(type='UDAStageHook', self_training_begin=stage1_iters),
]
val_cfg = {{_base_.val_loop}}
val_evaluator = {{_base_.class_iou_evaluator}}
test_evaluator = val_evaluator
