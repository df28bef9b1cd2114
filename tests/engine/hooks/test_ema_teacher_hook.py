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


# ---------------------------------------------------------------- checkpoints, real Runner
class ToyUDA(TwoHeads):
    """A model MMEngine's Runner trains: the student head learns, the teacher is frozen."""

    def __init__(self):
        super().__init__()
        from mmengine.model import BaseDataPreprocessor
        self.data_preprocessor = BaseDataPreprocessor()
        self.teacher_head.requires_grad_(False)

    def train_step(self, data, optim_wrapper):
        loss = self.decode_head(data).pow(2).mean()
        optim_wrapper.update_params(loss)
        return {'loss': loss}


def train_toy(work_dir, max_iters, hooks, load_from=None, resume=False):
    """Train ToyUDA with MMEngine's Runner; a checkpoint after every iteration."""
    from mmengine.runner import Runner
    from torch.utils.data import default_collate
    torch.manual_seed(len(str(work_dir)) + max_iters)
    runner = Runner(
        model=ToyUDA(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=[torch.randn(3) for _ in range(8)],
                              sampler=dict(type='InfiniteSampler', shuffle=False),
                              batch_size=4, collate_fn=default_collate),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1,
                                           by_epoch=False)),
        custom_hooks=hooks, load_from=load_from, resume=resume, default_scope='mmseg')
    runner.train()
    return runner.model


def saved(path):
    from mmengine.runner.checkpoint import _load_checkpoint
    return _load_checkpoint(str(path), map_location='cpu')


def test_fine_tuning_keeps_the_loaded_teacher_and_goes_on_with_its_ramp(tmp_path):
    # fine-tuning from a UDA checkpoint (load_from, the finished-run advice of
    # tools/train.py) copied the student into the loaded teacher and restarted the ramp
    train_toy(tmp_path / 'a', 3, [EMATeacherHook(momentum=0.1)])
    first = saved(tmp_path / 'a' / 'iter_3.pth')
    assert first['meta']['ema_teacher'] == {'updates': 3}
    loaded_teacher = torch.cat([first['state_dict'][f'teacher_head.{name}'].flatten().float()
                                for name in TwoHeads().teacher_head.state_dict()])
    model = train_toy(tmp_path / 'b', 1, [EMATeacherHook(momentum=0.1)],
                      load_from=str(tmp_path / 'a' / 'iter_3.pth'))
    m = max(0.1, 1 / 4)  # the 4th update of the teacher's average
    expected = (1 - m) * loaded_teacher + m * flat(model.decode_head)
    torch.testing.assert_close(flat(model.teacher_head)[:-1], expected[:-1])
    assert saved(tmp_path / 'b' / 'iter_1.pth')['meta']['ema_teacher'] == {'updates': 4}


def test_a_checkpoint_of_a_run_without_the_hook_gives_the_student_as_teacher(tmp_path):
    # a source-only run saves a teacher head that never moved from its initialisation
    train_toy(tmp_path / 'a', 2, [])
    assert 'ema_teacher' not in saved(tmp_path / 'a' / 'iter_2.pth')['meta']
    model = train_toy(tmp_path / 'b', 1, [EMATeacherHook(momentum=0.1)],
                      load_from=str(tmp_path / 'a' / 'iter_2.pth'))
    torch.testing.assert_close(flat(model.teacher_head), flat(model.decode_head))


def test_resuming_a_fine_tuned_run_keeps_counting_its_teacher_updates(tmp_path):
    train_toy(tmp_path / 'a', 3, [EMATeacherHook(momentum=0.01)])
    train_toy(tmp_path / 'b', 2, [EMATeacherHook(momentum=0.01)],
              load_from=str(tmp_path / 'a' / 'iter_3.pth'))
    hook = EMATeacherHook(momentum=0.01)
    train_toy(tmp_path / 'b', 4, [hook], resume=True)
    assert hook.updates_before_run == 3
    assert hook.momentum_at(2) == 1 / 6  # the 6th update: 3 loaded, 2 before the resume
    assert saved(tmp_path / 'b' / 'iter_4.pth')['meta']['ema_teacher'] == {'updates': 7}


def test_a_teacher_that_does_not_fit_is_not_kept():
    model, hook = TwoHeads(), EMATeacherHook()
    state = {f'teacher_head.{name}': value for name, value in
             TwoHeads().teacher_head.state_dict().items()}
    state['teacher_head.0.weight'] = torch.zeros(5, 3)  # another head: not loaded
    hook.after_load_checkpoint(runner_at(model, 0), {'meta': {'ema_teacher': {'updates': 9}},
                                                     'state_dict': state})
    hook.before_train(runner_at(model, 0))
    torch.testing.assert_close(flat(model.teacher_head), flat(model.decode_head))
    assert hook.updates_before_run == 0


def test_loading_into_a_model_without_the_heads_is_left_to_training():
    # tools/test.py --tta loads the checkpoint into a TTA wrapper (no decode_head): the
    # hook's check of the loaded teacher stopped the test run
    hook = EMATeacherHook()
    hook.after_load_checkpoint(runner_at(nn.Module(), 0),
                               {'meta': {'ema_teacher': {'updates': 3}}, 'state_dict': {}})
    assert hook._loaded_updates is None
