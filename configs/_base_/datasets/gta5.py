# Source domain: GTA5 (24,966 synthetic frames, 1914x1052) with the 19
# Cityscapes train ids; prepare with tools/dataset_converters/gta5.py.
gta5_type = 'GTA5Dataset'
gta5_root = 'data/gta5'
gta5_crop_size = (518, 518)  # at most 37x37 patches of 14 px (a lower resize crops lower)
gta5_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # GTA5 at about Cityscapes' half resolution (the target's test scale)
    dict(type='RandomResize', scale=(1036, 570), ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=gta5_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=gta5_type,
        data_root=gta5_root,
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        pipeline=gta5_train_pipeline))
