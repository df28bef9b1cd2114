"""EMATeacherHook with a mocked runner: copy at iteration 0, EMA after each iteration."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

from mmseg_saot.engine.hooks import EMATeacherHook, ema_update
from mmseg_saot.utils.errors import ConfigError, UserInputError


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.decode_head = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.teacher_head = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def runner_at(model, iteration):
    return SimpleNamespace(model=model, iter=iteration)


def flat(module):
    return torch.cat([t.detach().float().flatten() for t in module.state_dict().values()])


def test_fresh_run_copies_the_student_into_the_teacher():
    model = TwoHeads()
    EMATeacherHook().before_train(runner_at(model, 0))
    torch.testing.assert_close(flat(model.teacher_head), flat(model.decode_head))


def test_resumed_run_keeps_its_teacher():
    model = TwoHeads()
    before = flat(model.teacher_head).clone()
    EMATeacherHook().before_train(runner_at(model, 1000))
    torch.testing.assert_close(flat(model.teacher_head), before)


@pytest.mark.parametrize('ramp', [True, False])
def test_update_follows_the_momentum_convention_and_ramp(ramp):
    model = TwoHeads()
    hook = EMATeacherHook(momentum=0.01, ramp=ramp)
    for iteration in (0, 3, 500):
        teacher, student = flat(model.teacher_head).clone(), flat(model.decode_head)
        hook.after_train_iter(runner_at(model, iteration), 0)
        m = max(0.01, 1 / (iteration + 1)) if ramp else 0.01
        expected = (1 - m) * teacher + m * student
        # num_batches_tracked (an integer buffer) is copied, not averaged
        got = flat(model.teacher_head)
        torch.testing.assert_close(got[:-1], expected[:-1])
        assert got[-1] == student[-1]


def test_interval_skips_iterations():
    model = TwoHeads()
    hook = EMATeacherHook(momentum=0.5, ramp=False, interval=2)
    before = flat(model.teacher_head).clone()
    hook.after_train_iter(runner_at(model, 0), 0)  # iteration 1 of 2: no update
    torch.testing.assert_close(flat(model.teacher_head), before)
    hook.after_train_iter(runner_at(model, 1), 0)
    assert not torch.allclose(flat(model.teacher_head), before)


@MODEL_WRAPPERS.register_module()
class FakeDDP(nn.Module):
    """A registered model wrapper (as MMDistributedDataParallel is), without a process group."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_wrapped_model_is_unwrapped():
    model = TwoHeads()
    EMATeacherHook().before_train(runner_at(FakeDDP(model), 0))
    torch.testing.assert_close(flat(model.teacher_head), flat(model.decode_head))


def test_missing_teacher_is_a_clear_error():
    with pytest.raises(UserInputError, match='teacher_head'):
        EMATeacherHook().before_train(runner_at(nn.Module(), 0))


def test_mismatched_modules_are_refused():
    with pytest.raises(ValueError, match='differ'):
        ema_update(nn.Linear(2, 2), nn.Linear(2, 3, bias=False), 0.5)


@pytest.mark.parametrize('option, value, message', [
    ('momentum', 'abc', "momentum must be a number > 0 and <= 1, got 'abc'"),
    ('momentum', 0.0, 'momentum must be a number > 0 and <= 1, got 0.0'),
    ('interval', 0, 'interval must be an integer >= 1, got 0'),
])
def test_bad_options_are_config_errors_naming_them(option, value, message):
    with pytest.raises(ConfigError, match=f'^EMATeacherHook: {message}.$'):
        EMATeacherHook(**{option: value})


def test_the_ramp_counts_updates_not_iterations():
    # with interval 4 the first update (after iteration 3) used m = 1/4: three quarters
    # of the teacher stayed the randomly initialised head instead of copying the student
    model = TwoHeads()
    hook = EMATeacherHook(momentum=0.01, ramp=True, interval=4)
    assert [hook.momentum_at(i) for i in (3, 7, 11)] == [1.0, 1 / 2, 1 / 3]
    hook.after_train_iter(runner_at(model, 3), 0)
    student = flat(model.decode_head)
    torch.testing.assert_close(flat(model.teacher_head), student)


class HeadsAndNecks(TwoHeads):
    def __init__(self):
        super().__init__()
        self.neck, self.teacher_neck = nn.Linear(3, 3), nn.Linear(3, 3)


def test_a_neck_is_averaged_into_the_teacher_neck_like_the_head():
    model = HeadsAndNecks()
    hook = EMATeacherHook(momentum=0.25, ramp=False)
    hook.before_train(runner_at(model, 0))  # a fresh run copies both
    torch.testing.assert_close(flat(model.teacher_neck), flat(model.neck))
    with torch.no_grad():
        model.neck.weight.add_(1.0)
    teacher, student = flat(model.teacher_neck).clone(), flat(model.neck)
    hook.after_train_iter(runner_at(model, 5), 0)
    torch.testing.assert_close(flat(model.teacher_neck), 0.75 * teacher + 0.25 * student)
