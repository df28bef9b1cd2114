# Training schedule of the MLP head on frozen features (our choice; the
# paper gives no schedule): AdamW, poly decay, 20k iterations.
optim_wrapper = dict(
    type='OptimWrapper',
    # frozen backbone parameters never reach the optimizer
    constructor='TrainableOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=500, end=20000,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=20000,
                 val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000,
                    max_keep_ckpts=2, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
    # Ctrl-C or SIGTERM: finish the iteration, save iter_<N>.pth, stop (tools/train.py
    # prints the --resume command); a second signal stops at once, without saving
    interrupt=dict(type='SaveOnInterruptHook'))
