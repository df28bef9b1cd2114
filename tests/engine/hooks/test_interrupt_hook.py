"""SaveOnInterruptHook: the first signal stops training at the iteration's end, saved."""
import multiprocessing
import os
import signal
import subprocess
from unittest.mock import MagicMock

import pytest
from mmengine.runner import IterBasedTrainLoop

from mmseg_saot.engine.hooks import SaveOnInterruptHook, TrainingInterrupted
from mmseg_saot.engine.hooks.interrupt_hook import REPEAT_WINDOW_S, SIGNALS
from mmseg_saot.engine.hooks.pending_validation import pending_iteration
from mmseg_saot.utils.errors import ConfigError


@pytest.fixture
def hook():
    # Python's own SIGINT handler, whatever started pytest: a shell's background job
    # (`make test &`) inherits SIGINT ignored, and the hook rightly passes signals on to it
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    hook = SaveOnInterruptHook()
    yield hook
    SIGNALS.uninstall()  # whatever a test left, the next starts with Python's handlers
    SIGNALS.requested = False
    signal.signal(signal.SIGINT, inherited)


class Loop(IterBasedTrainLoop):
    """An iteration-based loop whose ``run`` calls what it is given (no runner)."""

    def __init__(self):
        pass

    def run(self, step=lambda: None):
        return step()


def in_loop(step):
    """Run ``step`` as the training loop's iterations do: inside ``Loop.run``."""
    return Loop().run(step)


def interrupt(number=signal.SIGINT):
    os.kill(os.getpid(), number)


def iter_runner(work_dir, iteration=4):
    runner = MagicMock()
    runner.train_loop = Loop()
    runner.work_dir, runner.iter, runner.epoch = str(work_dir), iteration, 0
    runner.save_checkpoint.side_effect = lambda out_dir, name, **kw: open(
        os.path.join(out_dir, name), 'w').close()
    info = {}  # the message hub's runtime info
    runner.message_hub.get_info.side_effect = info.get
    runner.message_hub.update_info.side_effect = info.__setitem__
    return runner


def checkpoint_hook_saved(runner, path):
    """What MMEngine's CheckpointHook leaves after saving ``path``."""
    runner.message_hub.update_info('last_ckpt', path)
    open(path, 'w').close()
    with open(os.path.join(runner.work_dir, 'last_checkpoint'), 'w') as pointer:
        pointer.write(path)


def test_first_signal_in_training_saves_at_the_iteration_end_and_stops(hook, tmp_path):
    runner = iter_runner(tmp_path)
    hook.before_run(runner)
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)  # no signal yet: nothing happens
    runner.save_checkpoint.assert_not_called()
    in_loop(interrupt)  # during an iteration: only flags the request
    assert SIGNALS.requested
    with pytest.raises(TrainingInterrupted) as stop:
        hook.after_train_iter(runner, 0)
    path = str(tmp_path / 'iter_5.pth')
    assert (stop.value.checkpoint, stop.value.iteration) == (path, 5)
    assert (stop.value.signal_name, stop.value.exit_code) == ('SIGINT', 130)
    runner.save_checkpoint.assert_called_once_with(
        str(tmp_path), 'iter_5.pth', by_epoch=False, meta=dict(epoch=0, iter=5))
    assert (tmp_path / 'last_checkpoint').read_text() == path
    hook.after_run(runner)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_iteration_the_checkpoint_hook_just_saved_is_not_saved_again(hook, tmp_path):
    runner = iter_runner(tmp_path, iteration=3)
    checkpoint_hook_saved(runner, str(tmp_path / 'iter_4.pth'))
    hook.before_run(runner)
    hook.before_train(runner)
    in_loop(lambda: interrupt(signal.SIGTERM))
    with pytest.raises(TrainingInterrupted, match='iter_4.pth') as stop:
        hook.after_train_iter(runner, 0)
    runner.save_checkpoint.assert_not_called()
    # the shell's code for SIGTERM, which batch schedulers read
    assert (stop.value.signal_name, stop.value.exit_code) == ('SIGTERM', 143)


@pytest.mark.parametrize('at', ['iteration end', 'validation'])
def test_a_checkpoint_hook_with_out_dir_and_filename_tmpl_is_followed(hook, tmp_path, at):
    # the hook looked for work_dir/iter_<N>.pth only: with another out_dir or
    # filename_tmpl it saved every stopped iteration a second time, and a signal during
    # the validation of a saved iteration waited for it
    from mmengine.hooks import CheckpointHook
    runner = iter_runner(tmp_path / 'work', iteration=3 if at == 'iteration end' else 4)
    os.makedirs(runner.work_dir)
    checkpoints = CheckpointHook(interval=4, out_dir=str(tmp_path / 'ckpts'),
                                 filename_tmpl='model_{}.pth')
    checkpoints.out_dir = str(tmp_path / 'ckpts' / 'work')  # as its before_train sets it
    os.makedirs(checkpoints.out_dir)
    runner.hooks = [checkpoints, hook]
    saved = os.path.join(checkpoints.out_dir, 'model_4.pth')
    hook.before_run(runner)
    hook.before_train(runner)
    checkpoint_hook_saved(runner, saved)
    if at == 'iteration end':
        in_loop(interrupt)
        with pytest.raises(TrainingInterrupted) as stop:
            hook.after_train_iter(runner, 0)
    else:
        hook.before_val_epoch(runner)
        with pytest.raises(TrainingInterrupted) as stop:
            in_loop(interrupt)
    assert (stop.value.checkpoint, stop.value.iteration) == (saved, 4)
    runner.save_checkpoint.assert_not_called()


def test_a_checkpoint_an_earlier_run_left_in_the_folder_is_saved_over(hook, tmp_path):
    # a fresh run in the folder of an earlier one: last_checkpoint still names the
    # earlier run's iter_5.pth, which must not stand in for this run's iteration 5
    (tmp_path / 'iter_5.pth').write_text('earlier run')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_5.pth'))
    runner = iter_runner(tmp_path, iteration=4)
    hook.before_run(runner)
    hook.before_train(runner)
    in_loop(interrupt)
    with pytest.raises(TrainingInterrupted):
        hook.after_train_iter(runner, 0)
    runner.save_checkpoint.assert_called_once_with(
        str(tmp_path), 'iter_5.pth', by_epoch=False, meta=dict(epoch=0, iter=5))
    assert (tmp_path / 'iter_5.pth').read_text() == ''  # this run's


def test_during_validation_of_a_saved_iteration_a_signal_stops_at_once(hook, tmp_path):
    runner = iter_runner(tmp_path, iteration=4)  # validating after iteration 4
    saved = str(tmp_path / 'iter_4.pth')
    checkpoint_hook_saved(runner, saved)
    hook.before_run(runner)
    hook.before_train(runner)
    hook.before_val_epoch(runner)
    with pytest.raises(TrainingInterrupted) as stop:
        in_loop(interrupt)  # raised by the handler: the validation is dropped
    assert (stop.value.checkpoint, stop.value.iteration) == (saved, 4)
    runner.save_checkpoint.assert_not_called()


def test_a_signal_before_such_a_validation_stops_before_it(hook, tmp_path):
    runner = iter_runner(tmp_path, iteration=4)
    checkpoint_hook_saved(runner, str(tmp_path / 'iter_4.pth'))
    hook.before_run(runner)
    hook.before_train(runner)
    in_loop(interrupt)  # came after the iteration's hooks had run
    with pytest.raises(TrainingInterrupted, match='iteration 4'):
        hook.before_val_epoch(runner)


def test_validation_of_an_unsaved_iteration_finishes_first(hook, tmp_path):
    runner = iter_runner(tmp_path, iteration=3)
    hook.before_run(runner)
    hook.before_train(runner)
    hook.before_val_epoch(runner)
    in_loop(interrupt)  # only flags: the validation finishes, then its iteration is saved
    assert SIGNALS.requested
    # it used to train one more iteration and save that one
    with pytest.raises(TrainingInterrupted, match='iter_3.pth') as stop:
        hook.after_val_epoch(runner)
    assert stop.value.iteration == 3
    runner.save_checkpoint.assert_called_once_with(
        str(tmp_path), 'iter_3.pth', by_epoch=False, meta=dict(epoch=0, iter=3))
    assert pending_iteration(str(tmp_path)) is None  # it ran: nothing owed


def test_a_checkpoint_saved_after_a_validation_records_its_own_iteration(hook, tmp_path):
    # a real Runner: during validation runner.iter already counts the iteration, and
    # MMEngine's default meta (runner.iter + 1) named iter_3.pth iteration 4, so that
    # --resume skipped an iteration and left the LR schedule one step behind
    import torch
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return dict(loss=self.linear(inputs).sum())

    class Ones(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, index):
            return dict(inputs=torch.ones(1))

    runner = Runner(model=Toy(), work_dir=str(tmp_path), default_scope='mmseg',
                    train_dataloader=dict(dataset=Ones(), batch_size=2,
                                          sampler=dict(type='InfiniteSampler'),
                                          collate_fn=dict(type='default_collate')),
                    train_cfg=dict(by_epoch=False, max_iters=6),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                    default_hooks=dict(checkpoint=None))
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.train_loop._iter = 3  # iteration 3 trained, now validated
    SIGNALS.install(['SIGINT'])
    SIGNALS.arm(runner.train_loop)
    SIGNALS.requested = True
    with pytest.raises(TrainingInterrupted) as stop:
        hook.after_val_epoch(runner)
    saved = torch.load(stop.value.checkpoint, map_location='cpu', weights_only=False)
    assert os.path.basename(stop.value.checkpoint) == 'iter_3.pth'
    assert saved['meta']['iter'] == stop.value.iteration == 3


def test_a_second_signal_stops_at_once_but_a_forwarded_copy_does_not(hook, tmp_path):
    runner = iter_runner(tmp_path)
    hook.before_run(runner)
    hook.before_train(runner)
    in_loop(interrupt)
    # torchrun forwards the terminal's Ctrl-C to each rank: the copy is the same request
    in_loop(interrupt)
    assert SIGNALS.installed and SIGNALS.requested
    SIGNALS.requested_at -= REPEAT_WINDOW_S  # the user presses Ctrl-C again, later
    with pytest.raises(KeyboardInterrupt):
        in_loop(interrupt)
    assert not SIGNALS.installed  # Python's handlers are back


def test_before_the_iterations_a_signal_interrupts_at_once(hook, tmp_path):
    hook.before_run(iter_runner(tmp_path))  # installed, not armed: pseudo-labelling
    with pytest.raises(KeyboardInterrupt):
        in_loop(interrupt)
    assert not SIGNALS.requested and not SIGNALS.installed


def test_outside_the_loop_an_armed_handler_passes_the_signal_on(hook, tmp_path):
    # e.g. training crashed in a notebook: the next Ctrl-C must interrupt as usual
    runner = iter_runner(tmp_path)
    hook.before_run(runner)
    hook.before_train(runner)
    with pytest.raises(KeyboardInterrupt):
        interrupt()
    assert not SIGNALS.requested and not SIGNALS.installed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_that_was_there_before_gets_the_signals_passed_on(hook, tmp_path):
    received = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        hook.before_run(iter_runner(tmp_path))
        interrupt()  # not armed: the earlier handler (a notebook kernel's, say) gets it
        assert received == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_epoch_based_loop_is_left_alone(hook, tmp_path):
    runner = iter_runner(tmp_path)
    runner.train_loop = MagicMock()  # not iteration-based
    hook.before_run(runner)
    hook.before_train(runner)
    assert not SIGNALS.armed
    with pytest.raises(KeyboardInterrupt):
        in_loop(interrupt)


def _signal_self_and_report(queue):
    interrupt()  # as the main process would pass it on, a worker of its own would die
    queue.put('alive')


def test_forked_workers_ignore_the_signal(hook, tmp_path):
    hook.install()
    SIGNALS.arm(Loop())
    context = multiprocessing.get_context('fork')  # how DataLoader workers start on Linux
    queue = context.Queue()
    worker = context.Process(target=_signal_self_and_report, args=(queue,))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0 and queue.get(timeout=10) == 'alive'
    assert not SIGNALS.requested  # the worker's signal did not stop the main process


def test_bad_signal_names_are_named():
    with pytest.raises(ConfigError, match='SIGNOPE'):
        SaveOnInterruptHook(signals=('SIGINT', 'SIGNOPE'))


def test_outside_the_loop_sigterm_keeps_its_default_action(python):
    # SIGTERM's default is to terminate: a scheduler's SIGTERM while not training still does
    script = ('import os, signal\n'
              'from mmseg_saot.engine.hooks.interrupt_hook import SIGNALS\n'
              "SIGNALS.install(['SIGTERM'])\n"
              'os.kill(os.getpid(), signal.SIGTERM)\n'
              "print('survived')\n")
    result = subprocess.run([python, '-c', script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGTERM, result.stderr[-2000:]
    assert 'survived' not in result.stdout


def test_under_ddp_every_rank_stops_on_the_signal_any_rank_got(hook, tmp_path, monkeypatch):
    # this rank saw Ctrl-C; another got the scheduler's SIGTERM: both must exit 143
    from mmseg_saot.engine.hooks import interrupt_hook
    def all_reduce(values, op):  # flags are 0 or 1; the signal reduce sends this rank's 2
        assert op == 'max'
        if values.tolist() == [float(signal.SIGINT)]:
            values.fill_(float(signal.SIGTERM))  # the other rank's number is higher
    monkeypatch.setattr(interrupt_hook.dist, 'get_world_size', lambda: 2)
    monkeypatch.setattr(interrupt_hook.dist, 'all_reduce', all_reduce)
    runner = iter_runner(tmp_path)
    hook.before_run(runner)
    hook.before_train(runner)
    in_loop(interrupt)
    with pytest.raises(TrainingInterrupted) as stop:
        hook.after_train_iter(runner, 0)
    assert (stop.value.signal_name, stop.value.exit_code) == ('SIGTERM', 143)


def validating_runner(work_dir, iteration, val_interval=3, max_iters=6):
    """A runner whose loop validates after every ``val_interval`` iterations and the last."""
    runner = iter_runner(work_dir, iteration)
    runner.train_loop.val_interval, runner.train_loop.val_begin = val_interval, 1
    runner.train_loop._max_iters = max_iters
    return runner


@pytest.mark.parametrize('iteration', [2, 6])  # stopped after iteration 3, then 7 (the last)
def test_a_stop_at_a_validation_iteration_records_the_validation_as_owed(hook, tmp_path,
                                                                          iteration):
    # the loop validates after the iteration; the stop skipped it, and --resume starts
    # after it: without the record that validation (after 7: the final one) never ran
    runner = validating_runner(tmp_path, iteration, val_interval=3, max_iters=7)
    hook.before_run(runner)
    hook.before_train(runner)
    in_loop(interrupt)
    with pytest.raises(TrainingInterrupted):
        hook.after_train_iter(runner, 0)
    assert (tmp_path / 'pending_validation').read_text() == f'{iteration + 1}\n'


def test_a_stop_between_validations_owes_none(hook, tmp_path):
    runner = validating_runner(tmp_path, 3)  # after iteration 4: no validation
    hook.before_run(runner)
    hook.before_train(runner)
    in_loop(interrupt)
    with pytest.raises(TrainingInterrupted):
        hook.after_train_iter(runner, 0)
    assert not (tmp_path / 'pending_validation').exists()


def test_a_validation_cut_short_stays_owed_and_a_finished_one_does_not(hook, tmp_path):
    runner = validating_runner(tmp_path, 3)
    checkpoint_hook_saved(runner, str(tmp_path / 'iter_3.pth'))
    hook.before_run(runner)
    hook.before_train(runner)
    hook.before_val_epoch(runner)
    hook.after_val_epoch(runner)  # finished: nothing owed
    assert not (tmp_path / 'pending_validation').exists()
    hook.before_val_epoch(runner)
    with pytest.raises(TrainingInterrupted):
        in_loop(interrupt)  # dropped: the resume owes it
    assert (tmp_path / 'pending_validation').read_text() == '3\n'


def test_a_resume_at_an_owed_validation_runs_it_first(hook, tmp_path):
    (tmp_path / 'pending_validation').write_text('3\n')
    for iteration, runs in ((4, 0), (3, 1)):  # a record of another iteration is not owed
        runner = validating_runner(tmp_path, iteration)
        hook.before_train(runner)
        assert runner.val_loop.run.call_count == runs
