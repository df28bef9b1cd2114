"""Distributed training on CPUs (gloo), e.g. ``tools/dist_train.sh CONFIG 2`` without GPUs.

mmengine 0.10.7 assumes GPUs under ``--launcher pytorch``: ``init_dist`` calls
``torch.cuda.set_device`` and the model is wrapped with ``device_ids=[LOCAL_RANK]``;
torch's SyncBatchNorm synchronises CUDA tensors only. :func:`prepare_cpu_distributed`
starts the gloo process group itself (mmengine then leaves it alone), names the
CPU wrapper below and turns SyncBN into BN. Nothing changes when CUDA is present.
"""
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

from mmseg_saot.utils.config_types import has_type, type_name


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU modules (``device_ids`` must be None)."""

    def __init__(self, module, device_ids=None, **kwargs) -> None:
        super().__init__(module=module, device_ids=None, **kwargs)


def _sync_bn_to_bn(node) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for _, value in list(items):
        if has_type(value, 'SyncBN'):  # 'SyncBN', 'mmseg.SyncBN'
            value['type'] = 'BN'
        if isinstance(value, (dict, list)):
            _sync_bn_to_bn(value)


def prepare_cpu_distributed(cfg: Config, launcher: str) -> None:
    """For ``launcher='pytorch'`` without CUDA: gloo group, CPU DDP wrapper, BN."""
    if launcher != 'pytorch' or torch.cuda.is_available():
        return
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                                      world_size=int(os.environ['WORLD_SIZE']))
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if type_name(wrapper.get('type', 'MMDistributedDataParallel')) == 'MMDistributedDataParallel':
        cfg.model_wrapper_cfg = dict(
            wrapper, type='CPUDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    _sync_bn_to_bn(cfg._cfg_dict['model'])
    print_log('distributed on CPUs: gloo process group, CPUDistributedDataParallel, and BN '
              'where the config says SyncBN (torch synchronises BN on GPUs only; '
              'EMATeacherHook averages the teacher\'s BN statistics over the ranks)',
              logger='current')
