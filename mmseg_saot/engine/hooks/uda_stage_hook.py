"""Switch EMATeacherUDA from SAOT pseudo-labels (stage 1) to self-training (stage 2)."""
import logging
from typing import Any, Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from mmseg_saot.utils.config_types import has_type
from mmseg_saot.utils.errors import ConfigError, UserInputError, check_integer


@HOOKS.register_module()
class UDAStageHook(Hook):
    """Before every iteration, tell the model its stage and iteration (``runner.iter``).

    Iterations ``[0, self_training_begin)`` are stage 1 (``'pseudo_labels'``: the
    head learns the SAOT pseudo-labels); from ``self_training_begin`` on, stage 2
    (``'self_training'``: the head learns the EMA teacher's labels). Both come from
    the loop's counter, so a resumed run is in the right stage with the right
    augmentation seeds.

    Args:
        self_training_begin: N1, the first iteration of stage 2 (0: self-training
            only; at or beyond ``max_iters``: stage 1 only).
    """

    priority = 'NORMAL'

    def __init__(self, self_training_begin: int) -> None:
        self.self_training_begin = check_integer('UDAStageHook', 'self_training_begin',
                                                 self_training_begin, minimum=0)
        self._stage1_scalars_dropped = False  # once per process (a resume restores them)

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'set_train_state'):
            raise UserInputError(
                f'UDAStageHook: the model ({type(model).__name__}) has no stages; use '
                "model=dict(type='EMATeacherUDA', ...) or drop the hook.")
        return model

    def stage_at(self, iteration: int) -> str:
        return 'pseudo_labels' if iteration < self.self_training_begin else 'self_training'

    def before_train(self, runner) -> None:
        model = self._model(runner)
        if hasattr(model, 'set_run_seed'):  # the strong views follow randomness.seed
            model.set_run_seed(runner.seed, get_rank())
        self._check_teacher_is_kept(runner)
        stage1_end = min(self.self_training_begin, runner.max_iters)
        stage2 = (f', [{self.self_training_begin}, {runner.max_iters}) the EMA teacher\'s'
                  if self.self_training_begin < runner.max_iters else ' (no stage 2)')
        print_log(f'UDAStageHook: iterations [0, {stage1_end}) learn the SAOT pseudo-labels'
                  f'{stage2}; starting at iteration {runner.iter} '
                  f'({self.stage_at(runner.iter)}).', logger='current')
        if 0 < runner.max_iters <= self.self_training_begin:
            print_log(self._no_stage2_message(runner), logger='current', level=logging.WARNING)

    def _check_teacher_is_kept(self, runner) -> None:
        """Stage 2 learns the teacher's labels: without EMATeacherHook (a custom_hooks
        list written anew drops it easily) the teacher is its random initialisation."""
        from .ema_teacher_hook import EMATeacherHook
        if self.self_training_begin >= runner.max_iters or any(
                isinstance(hook, EMATeacherHook) for hook in runner.hooks):
            return
        raise ConfigError(
            f'UDAStageHook: stage 2 (iterations [{self.self_training_begin}, '
            f'{runner.max_iters})) learns from the EMA teacher, but custom_hooks has no '
            'EMATeacherHook to keep it, so its labels would come from an untrained head. '
            "Add dict(type='EMATeacherHook') to custom_hooks (see configs/_base_/uda/), or "
            'end training before stage 2.')

    def _no_stage2_message(self, runner) -> str:
        """Stage 2 is out of reach: say so and how to shorten both stages."""
        hooks = runner.cfg.get('custom_hooks') or []
        index = next((i for i, hook in enumerate(hooks)
                      if has_type(hook, UDAStageHook)), None)
        key = ('the self_training_begin of UDAStageHook in custom_hooks' if index is None else
               f'custom_hooks.{index}.self_training_begin')
        half = max(1, runner.max_iters // 2)
        return (f'UDAStageHook: train_cfg.max_iters={runner.max_iters} ends before stage 2 '
                f'begins (self_training_begin={self.self_training_begin}): this run never '
                'self-trains. To shorten both stages, lower the hook\'s begin too, e.g. '
                f'--cfg-options train_cfg.max_iters={runner.max_iters} {key}={half}.')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        stage = self.stage_at(runner.iter)
        if runner.iter == self.self_training_begin and runner.iter > 0:
            print_log(f'UDAStageHook: stage 2 (EMA-teacher self-training) begins at '
                      f'iteration {runner.iter}.', logger='current')
        self._model(runner).set_train_state(stage, runner.iter)
        if stage == 'self_training' and not self._stage1_scalars_dropped:
            self._forget_stage1_scalars(runner)
            self._stage1_scalars_dropped = True

    @staticmethod
    def _forget_stage1_scalars(runner) -> None:
        """Drop the stage-1 loss history, so stage-2 logs do not repeat its last value."""
        scalars = runner.message_hub.log_scalars
        for key in [k for k in scalars if k.startswith('train/tgt.')]:
            scalars.pop(key)


def missing_stage_hook_warning(model, hooks, train_dataset_cfg: Any = None) -> Optional[str]:
    """A warning if ``model`` is staged (it has ``set_train_state``, as ``EMATeacherUDA``)
    and no :class:`UDAStageHook` is among the runner's ``hooks``: the run would stay in
    stage 1 for all its iterations and never self-train, without an error. None else,
    and None for a training set without a target (``train_dataset_cfg`` names no
    ``SourceTargetDataset``: a source-only baseline, which never self-trains by design).
    Wrappers (DDP) are looked through."""
    if is_model_wrapper(model):
        model = model.module
    if not hasattr(model, 'set_train_state') or any(isinstance(h, UDAStageHook) for h in hooks):
        return None
    if train_dataset_cfg is not None and not _names_a_target(train_dataset_cfg):
        return None
    return (f'{type(model).__name__} without UDAStageHook in custom_hooks: every iteration '
            'stays in stage 1 (the SAOT pseudo-labels) and the run never self-trains. Add '
            "dict(type='UDAStageHook', self_training_begin=N) to custom_hooks (as "
            'configs/_base_/uda/ema_self_training.py does).')


def _names_a_target(dataset_cfg: Any) -> bool:
    """Whether a dataset config (wrappers included) names a ``SourceTargetDataset``."""
    if isinstance(dataset_cfg, dict):
        return has_type(dataset_cfg, 'SourceTargetDataset') or any(
            _names_a_target(value) for value in dataset_cfg.values())
    if isinstance(dataset_cfg, (list, tuple)):
        return any(_names_a_target(value) for value in dataset_cfg)
    return False
