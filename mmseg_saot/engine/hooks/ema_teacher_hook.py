"""EMA update of a teacher decode head from the student's, keyed on ``runner.iter``."""
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import nn

from mmseg_saot.utils.errors import UserInputError, check_number, check_positive_int

# checkpoint['meta'][META_KEY] = {'updates': EMA updates the saved teacher has had}
META_KEY = 'ema_teacher'


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- (1 - momentum) teacher + momentum student``, in place.

    mmengine's convention: ``momentum`` is the weight of the new (student) value.
    Floating-point parameters and buffers (e.g. BatchNorm running statistics) are
    averaged; integer buffers (``num_batches_tracked``) are copied.

    Raises:
        ValueError: the two modules do not have the same tensors.
    """
    t_state, s_state = teacher.state_dict(keep_vars=True), student.state_dict(keep_vars=True)
    if t_state.keys() != s_state.keys():
        missing = sorted(set(t_state) ^ set(s_state))[:5]
        raise ValueError(f'EMA teacher and student differ in their tensors, e.g. {missing}.')
    for name, t_value in t_state.items():
        s_value = s_state[name].detach()
        if t_value.dtype.is_floating_point:
            t_value.data.lerp_(s_value.to(t_value.dtype), momentum)
        else:
            t_value.data.copy_(s_value)


@torch.no_grad()
def average_float_buffers(module: nn.Module) -> None:
    """Average floating-point buffers over the ranks, in place.

    Parameters agree across DDP ranks, but each rank's BatchNorm statistics follow
    its own batches (mmengine wraps with ``broadcast_buffers=False``): averaging
    the teacher's keeps it one model on every rank.
    """
    for buffer in module.buffers():
        if buffer.dtype.is_floating_point:
            all_reduce(buffer, op='mean')


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """Keep ``model.<teacher>`` an exponential moving average of ``model.<student>``.

    At the start of training from iteration 0 (not on resume) the teacher is copied
    from the student, so a resumed run keeps the teacher saved in its checkpoint. A run
    that fine-tunes from a checkpoint (``load_from``) whose teacher this hook trained
    keeps that teacher too, and its ramp goes on from the updates the teacher has had;
    the hook records their number in every checkpoint's ``meta['ema_teacher']``. The
    teacher of any other checkpoint (a source-only run's was never trained; one whose
    teacher does not fit this model is not loaded) is replaced by the student.
    After every ``interval``-th iteration t (``runner.iter`` before the loop
    increments it, counting from 0) the teacher moves towards the student with

    .. math:: m_t = \\max(m, 1 / (t + 1)) \\ \\text{(ramp)}, \\quad
              \\theta_T \\leftarrow (1 - m_t)\\,\\theta_T + m_t\\,\\theta_S,

    mmengine's momentum convention (``m`` weighs the student). While the ramp is above
    m, the teacher after k = t + 1 steps is the mean of the student's weights after
    steps 1..k: the first update copies the student (m_0 = 1). DAFormer's ramp,
    :math:`\\alpha = \\min(1 - 1/(k+1), \\alpha)` after k steps
    (:math:`m = 1 - \\alpha`), is one step behind: its mean also holds the weights
    before the first step, a randomly initialised head here. Early teachers follow the
    student closely in both.

    Args:
        momentum: m, the student's weight per update (0.001 = alpha 0.999).
        ramp: use :math:`m_t = \\max(m, 1/(t+1))`, t counting updates (with
            ``interval`` > 1, the n-th update uses :math:`\\max(m, 1/n)`).
        interval: update every ``interval`` iterations.
        student, teacher: attribute names of the two modules on the (unwrapped) model.
        student_neck, teacher_neck: a second pair, averaged alike where the model has
            both (``EMATeacherUDA`` with a neck, which trains with the head).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, momentum: float = 0.001, ramp: bool = True, interval: int = 1,
                 student: str = 'decode_head', teacher: str = 'teacher_head',
                 student_neck: str = 'neck', teacher_neck: str = 'teacher_neck') -> None:
        check_number('EMATeacherHook', 'momentum', momentum, above=0.0, at_most=1.0)
        check_positive_int('EMATeacherHook', 'interval', interval)
        self.momentum, self.ramp, self.interval = momentum, ramp, interval
        self.student_name, self.teacher_name = student, teacher
        self.neck_names = (student_neck, teacher_neck)
        # EMA updates the teacher had before iteration 0 of this run (a fine-tuned
        # checkpoint's), and those that the last loaded checkpoint recorded
        self.updates_before_run = 0
        self._loaded_updates: Optional[int] = None

    def _pairs(self, runner):
        """``(student, teacher)`` modules to average: the heads, and the necks where the
        (unwrapped) model has both."""
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        heads, necks = ([getattr(model, name, None) for name in names]
                        for names in ((self.student_name, self.teacher_name), self.neck_names))
        if not all(isinstance(m, nn.Module) for m in heads):
            raise UserInputError(
                f'EMATeacherHook: the model ({type(model).__name__}) needs modules '
                f'"{self.student_name}" (student) and "{self.teacher_name}" (teacher); set '
                'the hook\'s student=/teacher= names or use the EMATeacherUDA segmentor.')
        has_necks = all(isinstance(m, nn.Module) for m in necks)
        return [tuple(heads)] + ([tuple(necks)] if has_necks else [])

    def momentum_at(self, iteration: int) -> float:
        """m of the update after iteration ``iteration`` (0-based). The ramp counts
        updates, not iterations: with ``interval`` k the n-th update (after iteration
        n*k - 1) uses max(m, 1/n), so the first one still copies the student."""
        if not self.ramp:
            return self.momentum
        updates = max(1, self.updates_before_run + (iteration + 1) // self.interval)
        return max(self.momentum, 1.0 / updates)

    def updates_after(self, iterations: int) -> int:
        """EMA updates the teacher has had once ``iterations`` iterations of this run are
        done (those of a fine-tuned checkpoint included)."""
        return self.updates_before_run + iterations // self.interval

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Note how many EMA updates the checkpoint's teacher has had, if this hook trained
        it and it fits the model (MMEngine calls this for ``load_from`` and resume)."""
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        record = meta.get(META_KEY) if isinstance(meta, dict) else None
        updates = record.get('updates') if isinstance(record, dict) else None
        try:  # _pairs: the heads first, then the necks
            pairs = self._pairs(runner)
        except UserInputError:  # a test run's wrapper (the TTA model): nothing to keep
            self._loaded_updates = None
            return
        teachers = [(name, teacher) for name, (_, teacher) in
                    zip((self.teacher_name, self.neck_names[1]), pairs)]
        fits = isinstance(updates, int) and _teacher_fits(teachers, checkpoint)
        self._loaded_updates = updates if fits else None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.setdefault('meta', {})
        iterations = meta.get('iter', runner.iter + 1)
        meta[META_KEY] = {'updates': self.updates_after(int(iterations))}

    def before_train(self, runner) -> None:
        pairs = self._pairs(runner)
        loaded = self._loaded_updates
        if runner.iter > 0:  # resumed: the checkpoint's own teacher and count
            self.updates_before_run = max(0, (loaded or 0) - runner.iter // self.interval)
        elif loaded is not None:  # fine-tuning from a checkpoint whose teacher this hook trained
            self.updates_before_run = loaded
            print_log(f'EMATeacherHook: the teacher of the loaded checkpoint ({loaded} EMA '
                      'updates) is kept and goes on averaging the student.', logger='current')
        else:  # a fresh run
            self.updates_before_run = 0
            for student, teacher in pairs:
                ema_update(teacher, student, 1.0)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if (runner.iter + 1) % self.interval:
            return
        for student, teacher in self._pairs(runner):
            ema_update(teacher, student, self.momentum_at(runner.iter))
            if get_world_size() > 1:
                average_float_buffers(teacher)


def _teacher_fits(teachers: list, checkpoint: dict) -> bool:
    """Whether the checkpoint's state dict holds every tensor of the ``(attribute name,
    module)`` teachers in its shape (MMEngine loads ``load_from`` non-strictly: a missing
    or mismatched tensor is skipped)."""
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        return False
    for prefix, teacher in teachers:
        for name, value in teacher.state_dict().items():
            saved = state.get(f'{prefix}.{name}', state.get(f'module.{prefix}.{name}'))
            if not isinstance(saved, torch.Tensor) or saved.shape != value.shape:
                return False
    return True
