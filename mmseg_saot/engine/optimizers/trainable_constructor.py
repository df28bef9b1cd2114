"""An optimizer constructor that hands only trainable parameters over."""
import contextlib
import logging
from typing import Iterator, List

from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                            OPTIMIZERS)
from torch import nn

from mmseg_saot.utils.errors import ConfigError

# what MMEngine's add_params logs, as a WARNING, for every frozen parameter tensor
FROZEN_NOTICE = 'is skipped since its requires_grad=False'


class _DropFrozenNotices(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        return FROZEN_NOTICE not in record.getMessage()


@contextlib.contextmanager
def _without_frozen_notices() -> Iterator[None]:
    """Silence MMEngine's per-tensor warning for frozen parameters (hundreds of lines
    for a frozen ViT, burying the warnings that matter); one summary line replaces it."""
    logger = MMLogger.get_current_instance()
    notices = _DropFrozenNotices()
    logger.addFilter(notices)
    try:
        yield
    finally:
        logger.removeFilter(notices)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Like MMEngine's default constructor, but frozen parameters (those with
    ``requires_grad=False``, e.g. the whole DINOv2 backbone) never reach the
    optimizer: no state is allocated for them and no weight decay can touch
    them. ``paramwise_cfg`` (``custom_keys``, ``lr_mult``, ...) works as in
    the default constructor. Instead of MMEngine's warning for each frozen tensor,
    one INFO line counts the trained and the frozen parameters.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        param_groups: List[dict] = []
        with _without_frozen_notices():
            self.add_params(param_groups, model)
        trainable = [group for group in param_groups
                     if group['params'][0].requires_grad]
        if not trainable:
            raise ConfigError('TrainableOptimWrapperConstructor: the model has '
                              'no trainable parameters.')
        frozen = [p for p in model.parameters() if not p.requires_grad]
        trained = sum(p.numel() for group in trainable for p in group['params'])
        print_log(f'TrainableOptimWrapperConstructor: {trained:,} parameters '
                  f'({len(trainable)} tensors) are trained; {sum(p.numel() for p in frozen):,} '
                  f'({len(frozen)} tensors, requires_grad=False) are frozen and left out.',
                  logger='current')
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = trainable
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg,
                                    default_args=dict(optimizer=optimizer))
