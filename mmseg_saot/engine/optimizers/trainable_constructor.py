"""An optimizer constructor that hands only trainable parameters over."""
from typing import List

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                            OPTIMIZERS)
from torch import nn

from mmseg_saot.utils.errors import ConfigError


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Like MMEngine's default constructor, but frozen parameters (those with
    ``requires_grad=False``, e.g. the whole DINOv2 backbone) never reach the
    optimizer: no state is allocated for them and no weight decay can touch
    them. ``paramwise_cfg`` (``custom_keys``, ``lr_mult``, ...) works as in
    the default constructor.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        param_groups: List[dict] = []
        self.add_params(param_groups, model)
        trainable = [group for group in param_groups
                     if group['params'][0].requires_grad]
        if not trainable:
            raise ConfigError('TrainableOptimWrapperConstructor: the model has '
                              'no trainable parameters.')
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = trainable
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg,
                                    default_args=dict(optimizer=optimizer))
