# The demo's source-only baseline: the MLP head trained on the labelled "game"
# source alone (no pseudo-labels, no self-training) for stage 1's iterations,
# evaluated on the "real" target's val split.
_base_ = ['./demo.py']

model = dict(predict_on='student')  # the trained head (no teacher needed)
train_dataloader = dict(
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='GTA5Dataset',
        data_root='data/demo/gta5',
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        pipeline={{_base_.source_train_pipeline}}))
custom_hooks = []  # no pseudo-labelling stage, no teacher
val_cfg = dict(branches=('student', ))  # the teacher is never trained here
train_cfg = dict(max_iters={{_base_.stage1_iters}},
                 val_interval={{_base_.stage1_iters}})
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30,
         end={{_base_.stage1_iters}}, by_epoch=False),
]
