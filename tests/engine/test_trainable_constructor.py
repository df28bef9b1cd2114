import pytest
import torch
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS


@pytest.fixture(scope='module')
def segmentor():
    return MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='DINOv2Backbone',
                      model_name='vit_small_patch14_dinov2', out_indices=1),
        decode_head=dict(type='MLPHead', in_channels=[384], channels=8,
                         num_classes=3, norm_cfg=dict(type='BN'))))


def build(paramwise_cfg=None):
    return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='TrainableOptimWrapperConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(
            type='AdamW', lr=1e-3, weight_decay=0.01)),
        paramwise_cfg=paramwise_cfg))


def optimizer_params(optim_wrapper):
    return {id(p) for group in optim_wrapper.optimizer.param_groups
            for p in group['params']}


def test_only_head_parameters_reach_the_optimizer(segmentor):
    handed = optimizer_params(build()(segmentor))
    head = {id(p) for p in segmentor.decode_head.parameters()}
    assert handed == head
    assert not handed & {id(p) for p in segmentor.backbone.parameters()}


def test_paramwise_options_still_apply(segmentor):
    wrapper = build(dict(custom_keys={'conv_seg': dict(lr_mult=10.0)}))(
        segmentor)
    lrs = {group['lr'] for group in wrapper.optimizer.param_groups}
    assert lrs == {1e-3, 1e-2}


def test_a_step_leaves_the_backbone_unchanged(segmentor):
    wrapper = build()(segmentor)
    before = segmentor.backbone.vit.blocks[0].mlp.fc1.weight.clone()
    logits = segmentor.decode_head(segmentor.backbone(torch.rand(1, 3, 28,
                                                                 28)))
    wrapper.update_params(logits.square().mean())
    torch.testing.assert_close(segmentor.backbone.vit.blocks[0].mlp.fc1.weight,
                               before)


def test_no_trainable_parameters_is_an_error():
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match='no trainable'):
        build()(frozen)


def test_frozen_tensors_give_one_summary_instead_of_a_warning_each(segmentor, monkeypatch):
    import logging

    from mmengine.logging import MMLogger
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = MMLogger.get_current_instance()
    keep = Keep(level=logging.DEBUG)
    logger.addHandler(keep)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        build()(segmentor)
        build(dict(custom_keys={'conv_seg': dict(lr_mult=10.0)}))(segmentor)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(previous)
    messages = [record.getMessage() for record in records]
    assert not [m for m in messages if 'requires_grad=False' in m and 'skipped' in m]
    frozen = [p for p in segmentor.parameters() if not p.requires_grad]
    head = sum(p.numel() for p in segmentor.decode_head.parameters())
    summary = (f'TrainableOptimWrapperConstructor: {head:,} parameters '
               f'({len(list(segmentor.decode_head.parameters()))} tensors) are trained; '
               f'{sum(p.numel() for p in frozen):,} ({len(frozen)} tensors, '
               'requires_grad=False) are frozen and left out.')
    assert messages.count(summary) == 2
    assert not any(isinstance(f, logging.Filter) and type(f).__name__ == '_DropFrozenNotices'
                   for f in logger.filters)  # the filter is removed again
