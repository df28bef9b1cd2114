# The demo's source-only baseline: the MLP head trained on the labelled "game"
# source (no pseudo-labels), evaluated on the "real" target. Compare with
# demo.py, which trains the same head on SAOT pseudo-labels of the target.
_base_ = ['./demo.py']

source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale={{_base_.label_scale}}, ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='GTA5Dataset',
        data_root='data/demo/gta5',
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        pipeline=source_train_pipeline))
custom_hooks = []  # no pseudo-labelling stage
