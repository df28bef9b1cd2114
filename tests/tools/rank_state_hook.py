"""A test-only hook: each rank saves its teacher and student heads after training."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class RankStateHook(Hook):
    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {f'{name}.{key}': value.detach().cpu().clone()
                 for name in ('teacher_head', 'decode_head')
                 for key, value in getattr(model, name).state_dict().items()}
        torch.save(state, osp.join(runner.work_dir, f'heads_rank{get_rank()}.pth'))
