"""cpu_distributed: SyncBN becomes BN, whatever names it, and the wrapper becomes the CPU one."""
from mmengine.config import Config

from mmseg_saot.utils import cpu_distributed


def test_sync_bn_becomes_bn_scoped_or_not_at_any_depth():
    # a scoped 'mmseg.SyncBN' stayed SyncBN, which synchronises CUDA tensors only
    model = dict(backbone=dict(norm_cfg=dict(type='mmseg.SyncBN')),
                 decode_head=dict(norm_cfg=dict(type='SyncBN', requires_grad=True),
                                  layers=[dict(type='SyncBN')]),
                 neck=dict(norm_cfg=dict(type='GN')))
    cpu_distributed._sync_bn_to_bn(model)
    assert model['backbone']['norm_cfg']['type'] == 'BN'
    assert model['decode_head']['norm_cfg'] == dict(type='BN', requires_grad=True)
    assert model['decode_head']['layers'][0]['type'] == 'BN'
    assert model['neck']['norm_cfg']['type'] == 'GN'


def test_a_scoped_default_wrapper_becomes_the_cpu_wrapper(monkeypatch):
    monkeypatch.setattr(cpu_distributed.torch_dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(cpu_distributed.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(cpu_distributed, 'print_log', lambda *args, **kwargs: None)
    cfg = Config(dict(model=dict(type='M'),
                      model_wrapper_cfg=dict(type='mmengine.MMDistributedDataParallel')))
    cpu_distributed.prepare_cpu_distributed(cfg, 'pytorch')
    assert cfg.model_wrapper_cfg.type == 'CPUDistributedDataParallel'
    cfg = Config(dict(model=dict(type='M'), model_wrapper_cfg=dict(type='MyWrapper')))
    cpu_distributed.prepare_cpu_distributed(cfg, 'pytorch')
    assert cfg.model_wrapper_cfg.type == 'MyWrapper'  # a user's own wrapper is kept
