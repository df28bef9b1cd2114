"""UDAStageHook: the stage and iteration come from runner.iter (resume-safe)."""
from unittest.mock import MagicMock

import pytest
from mmengine.logging import MessageHub
from torch import nn

from mmseg_saot.engine.hooks import UDAStageHook
from mmseg_saot.utils.errors import ConfigError, UserInputError


class StagedModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def set_train_state(self, stage, iteration):
        self.calls.append((stage, iteration))


def runner_at(iteration, model):
    from mmseg_saot.engine.hooks import EMATeacherHook
    runner = MagicMock()
    runner.iter, runner.max_iters, runner.model = iteration, 10, model
    runner.hooks = [EMATeacherHook()]
    runner.message_hub = MessageHub(f'stage_hook_test_{id(runner)}')
    return runner


def test_stage_switches_at_self_training_begin():
    model, hook = StagedModel(), UDAStageHook(self_training_begin=4)
    for it in (0, 3, 4, 9):
        hook.before_train_iter(runner_at(it, model), batch_idx=it)
    assert model.calls == [('pseudo_labels', 0), ('pseudo_labels', 3),
                           ('self_training', 4), ('self_training', 9)]


def test_a_resumed_run_starts_in_the_right_stage():
    model, hook = StagedModel(), UDAStageHook(self_training_begin=4)
    runner = runner_at(6, model)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    assert model.calls == [('self_training', 6)]


def test_the_model_gets_the_runs_seed_and_rank():
    model = StagedModel()
    model.set_run_seed = lambda seed, rank: model.calls.append(('seed', seed, rank))
    runner = runner_at(0, model)
    runner.seed = 1234
    UDAStageHook(self_training_begin=4).before_train(runner)
    assert model.calls == [('seed', 1234, 0)]


def test_a_model_without_stages_is_a_clear_error():
    with pytest.raises(UserInputError, match='EMATeacherUDA'):
        UDAStageHook(self_training_begin=1).before_train(runner_at(0, nn.Linear(1, 1)))
    with pytest.raises(ValueError, match='self_training_begin'):
        UDAStageHook(self_training_begin=-1)


def test_stage2_logs_do_not_repeat_the_last_stage1_loss():
    model, hook = StagedModel(), UDAStageHook(self_training_begin=2)
    runner = runner_at(1, model)
    runner.message_hub.update_scalar('train/tgt.loss_ce', 0.5)
    runner.message_hub.update_scalar('train/src.loss_ce', 0.4)
    hook.before_train_iter(runner, batch_idx=1)
    assert 'train/tgt.loss_ce' in runner.message_hub.log_scalars
    runner.iter = 2
    hook.before_train_iter(runner, batch_idx=2)
    assert 'train/tgt.loss_ce' not in runner.message_hub.log_scalars
    assert 'train/src.loss_ce' in runner.message_hub.log_scalars  # both stages have it


@pytest.mark.parametrize('begin, max_iters, warns', [(10, 10, True), (12, 10, True),
                                                     (9, 10, False), (0, 10, False)])
def test_a_run_that_ends_before_stage2_warns_with_the_option_to_lower(begin, max_iters, warns,
                                                                       monkeypatch):
    from mmengine.config import Config

    from mmseg_saot.engine.hooks import uda_stage_hook
    logged = []
    monkeypatch.setattr(uda_stage_hook, 'print_log',
                        lambda message, **kwargs: logged.append((message, kwargs)))
    runner = runner_at(0, StagedModel())
    runner.max_iters = max_iters
    runner.cfg = Config(dict(custom_hooks=[dict(type='EMATeacherHook'),
                                           dict(type='UDAStageHook', self_training_begin=begin)]))
    UDAStageHook(self_training_begin=begin).before_train(runner)
    warnings = [message for message, kwargs in logged if kwargs.get('level') is not None]
    stage1_end = min(begin, max_iters)
    stage2 = (f', [{begin}, {max_iters}) the EMA teacher\'s' if not warns else ' (no stage 2)')
    assert logged[0][0] == (f'UDAStageHook: iterations [0, {stage1_end}) learn the SAOT '
                            f'pseudo-labels{stage2}; starting at iteration 0 '
                            f'({"pseudo_labels" if begin else "self_training"}).')
    if not warns:
        assert warnings == []
        return
    assert warnings == [
        f'UDAStageHook: train_cfg.max_iters={max_iters} ends before stage 2 begins '
        f'(self_training_begin={begin}): this run never self-trains. To shorten both stages, '
        "lower the hook's begin too, e.g. --cfg-options train_cfg.max_iters=10 "
        'custom_hooks.1.self_training_begin=5.']


@pytest.mark.parametrize('hook_type', ['mmseg.UDAStageHook', UDAStageHook])
def test_the_no_stage2_hint_finds_a_scoped_or_class_hook_type(hook_type):
    runner = runner_at(0, StagedModel())
    runner.cfg = dict(custom_hooks=[dict(type='EMATeacherHook'),
                                    dict(type=hook_type, self_training_begin=20)])
    message = UDAStageHook(self_training_begin=20)._no_stage2_message(runner)
    assert message.endswith('custom_hooks.1.self_training_begin=5.')


@pytest.mark.parametrize('bad', ['abc', -1, 2.5, None])
def test_a_stage_switch_that_is_not_an_iteration_is_named(bad):
    with pytest.raises(ConfigError, match=f'^UDAStageHook: self_training_begin must be an '
                                          f'integer >= 0, got {bad!r}.$'):
        UDAStageHook(self_training_begin=bad)


def test_stage2_without_the_ema_teacher_hook_is_a_config_error():
    # custom_hooks written anew without EMATeacherHook: stage 2 learned the labels of
    # a teacher head that was never trained (its random initialisation)
    runner = runner_at(0, StagedModel())
    runner.hooks = []
    with pytest.raises(ConfigError, match=(
            r'UDAStageHook: stage 2 \(iterations \[4, 10\)\) learns from the EMA teacher, '
            'but custom_hooks has no EMATeacherHook')):
        UDAStageHook(self_training_begin=4).before_train(runner)
    UDAStageHook(self_training_begin=10).before_train(runner)  # no stage 2: nothing to say


def test_a_staged_model_without_the_stage_hook_is_warned_of():
    # EMATeacherUDA without UDAStageHook stayed in stage 1 for the whole run, silently
    from mmseg_saot.engine.hooks.uda_stage_hook import missing_stage_hook_warning

    class Staged(nn.Module):
        def set_train_state(self, stage, iteration):
            pass

    warning = missing_stage_hook_warning(Staged(), [MagicMock()])
    assert warning.startswith('Staged without UDAStageHook in custom_hooks: every iteration '
                              'stays in stage 1')
    assert missing_stage_hook_warning(Staged(), [UDAStageHook(self_training_begin=3)]) is None
    assert missing_stage_hook_warning(nn.Linear(1, 1), []) is None  # not a staged model
    # a source-only baseline (demo_source_only.py) never self-trains by design: it was
    # told to add a UDAStageHook at every run of make demo
    uda = dict(type='RepeatDataset', times=2, dataset=dict(type='SourceTargetDataset'))
    assert missing_stage_hook_warning(Staged(), [], uda).startswith('Staged without')
    assert missing_stage_hook_warning(Staged(), [], dict(type='GTA5Dataset')) is None
