# Target domain: Cityscapes. Its train split is used without labels (for
# pseudo-labelling); val (500 images) is the benchmark. Prepare with
# tools/dataset_converters/cityscapes.py.
cityscapes_type = 'CityscapesDataset'
cityscapes_root = 'data/cityscapes'
cityscapes_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1036, 518), keep_ratio=True),  # 37x74 patches
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# the unlabelled target training images (used from the pseudo-label stage on)
cityscapes_train = dict(
    type=cityscapes_type,
    data_root=cityscapes_root,
    data_prefix=dict(img_path='leftImg8bit/train'),
    pipeline=[dict(type='LoadImageFromFile'),
              dict(type='Resize', scale=(1036, 518), keep_ratio=True),
              dict(type='PackSegInputs')])
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=cityscapes_type,
        data_root=cityscapes_root,
        data_prefix=dict(img_path='leftImg8bit/val',
                         seg_map_path='gtFine/val'),
        pipeline=cityscapes_test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# test-time augmentation (tools/test.py --tta): the test scale x 0.75, 1 and
# 1.25, each also flipped; SegTTAModel (default_runtime) averages the 6 views
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(777, 389), keep_ratio=True),
         dict(type='Resize', scale=(1036, 518), keep_ratio=True),
         dict(type='Resize', scale=(1295, 648), keep_ratio=True)],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]
