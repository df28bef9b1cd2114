"""EMA update of a teacher decode head from the student's, keyed on ``runner.iter``."""
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import nn

from mmseg_saot.utils.errors import UserInputError, check_number, check_positive_int


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
    from the student, so a resumed run keeps the teacher saved in its checkpoint.
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
        updates = max(1, (iteration + 1) // self.interval)
        return max(self.momentum, 1.0 / updates)

    def before_train(self, runner) -> None:
        pairs = self._pairs(runner)
        if runner.iter == 0:  # a fresh run; a resumed one keeps its checkpointed teacher
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
