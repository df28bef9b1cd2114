"""tools/train.py and tools/test.py end to end on a tiny dataset (CPU)."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tiny_uda import tiny_uda_config, write_tiny_uda_data

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / 'tools' / 'train.py')
TEST = str(REPO / 'tools' / 'test.py')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_uda_data(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='module')
def tiny_config(tiny_data, tmp_path_factory) -> Path:
    """demo.py on tiny data: SAOT pseudo-labels, then the head trains on them."""
    path = tmp_path_factory.mktemp('cfg') / 'tiny.py'
    path.write_text(tiny_uda_config(tiny_data))
    return path


def run_tool(python, *args, cwd=None, timeout=600):
    return subprocess.run([python, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


@pytest.mark.parametrize('config', ['gta2cs.py', 'voc.py'])
def test_without_data_a_clear_message_and_no_traceback(python, tmp_path,
                                                       config):
    result = run_tool(python, TRAIN, REPO / 'configs' / 'saot' / config,
                      cwd=tmp_path)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr + result.stdout
    assert 'Expected layout' in result.stderr
    assert 'tools/dataset_converters/' in result.stderr


def test_missing_config_is_a_clear_message(python, tmp_path):
    result = run_tool(python, TRAIN, tmp_path / 'nope.py')
    assert result.returncode == 2
    assert 'nope.py" does not exist' in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('args, message', [
    (['--cfg-options', 'train_cfg.max_iters'],
     "train.py: error: --cfg-options: 'train_cfg.max_iters' is not KEY=VALUE"),
    (['--launcher', 'pytorch'], 'error: --launcher pytorch: the environment lacks RANK'),
    (['--cfg-options', 'train_cfg.val_interval=0'],  # MMEngine: integer modulo by zero
     'train_cfg.val_interval must be an integer >= 1, got 0 (from the config or --cfg-options)'),
    (['--work-dir', '{file}'], 'error: --work-dir: {file} exists and is not a folder'),
])
def test_bad_command_line_is_a_clear_message(python, tiny_config, tmp_path, args, message):
    taken = tmp_path / 'taken'
    taken.write_text('')
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE')}
    result = subprocess.run([python, str(TRAIN), str(tiny_config),
                             *[a.format(file=taken) for a in args]],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr + result.stdout
    assert message.format(file=taken) in result.stderr


def test_bad_model_option_is_a_clear_message(python, tiny_config, tmp_path):
    result = run_tool(python, TRAIN, tiny_config, '--work-dir', tmp_path / 'run',
                      '--cfg-options', 'model.decode_head.num_layers=0')
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr + result.stdout
    assert 'error: MLPHead: num_layers must be an integer >= 1, got 0.' in result.stderr


@pytest.mark.parametrize('option, message', [
    ('model.decode_head.num_clases=5', "model.decode_head.num_clases: MLPHead has no option "
     "'num_clases' (from the config or --cfg-options). Did you mean 'num_classes'?"),
    ('model.decode_head.type=MLPHeadd', "model.decode_head.type='MLPHeadd' is not a "
     "registered mmseg::model type"),
])
def test_misspelt_option_or_type_is_named_with_the_closest_match(python, tiny_config, tmp_path,
                                                                 option, message):
    result = run_tool(python, TRAIN, tiny_config, '--work-dir', tmp_path / 'run',
                      '--cfg-options', option)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr + result.stdout
    assert f'error: {tiny_config}: {message}' in result.stderr


def test_unreadable_checkpoint_is_a_clear_message(python, tiny_config, tmp_path):
    garbage = tmp_path / 'iter_1.pth'
    garbage.write_text('not a checkpoint')
    tested = run_tool(python, TEST, tiny_config, garbage, '--work-dir', tmp_path / 'run')
    assert tested.returncode == 2
    assert 'Traceback' not in tested.stderr + tested.stdout
    assert f'error: CHECKPOINT: "{garbage}" is not a readable checkpoint' in tested.stderr


def test_checkpoint_of_another_model_is_a_clear_message(python, tiny_config, tmp_path):
    other = tmp_path / 'other.pth'  # readable, but holds none of the model's weights
    torch.save({'meta': {}, 'state_dict': {'backbone.w': torch.ones(2)}}, other)
    tested = run_tool(python, TEST, tiny_config, other, '--work-dir', tmp_path / 'run')
    assert tested.returncode == 2
    assert 'Traceback' not in tested.stderr + tested.stdout
    assert f'error: CHECKPOINT: "{other}" does not fit the model of {tiny_config}' in tested.stderr
    assert 'Iter(test)' not in tested.stdout + tested.stderr  # stopped before evaluating


def test_a_plain_data_preprocessor_is_refused_before_pseudo_labelling(python, tiny_config,
                                                                      tmp_path):
    # checked in train_step only: after the whole target set was labelled, and never
    # under DDP, whose wrapper calls the preprocessor itself (KeyError: 0 inside MMSeg)
    trained = run_tool(python, TRAIN, tiny_config, '--work-dir', tmp_path / 'run',
                       '--cfg-options', 'model.data_preprocessor.type=SegDataPreProcessor')
    assert trained.returncode == 2
    output = trained.stdout + trained.stderr
    assert 'Traceback' not in output
    assert 'EMATeacherUDA: training needs model.data_preprocessor to be a ' \
        'UDADataPreProcessor' in ' '.join(trained.stderr.split())
    assert 'pseudo-labelling' not in output and not (tmp_path / 'run' / 'pseudo_labels').exists()


def test_resume_from_another_model_is_a_clear_message(python, tiny_config, tmp_path):
    # a work dir whose last checkpoint is of another model (the config was edited)
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    other = work_dir / 'iter_4.pth'
    torch.save({'meta': {}, 'state_dict': {'decode_head.conv_seg.weight': torch.ones(2)}},
               other)
    (work_dir / 'last_checkpoint').write_text(str(other))
    resumed = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--resume')
    assert resumed.returncode == 2
    assert 'Traceback' not in resumed.stderr + resumed.stdout
    assert f'error: --resume: "{other}" does not fit the model of {tiny_config}' in resumed.stderr
    assert 'decode_head.conv_seg.weight ((2,) in the checkpoint' in resumed.stderr
    # the file last_checkpoint names is gone: named too, before any training
    other.unlink()
    resumed = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--resume')
    assert resumed.returncode == 2
    assert (f'error: --resume: {work_dir}/last_checkpoint names {other}, which does not '
            'exist (deleted or moved); no checkpoint is left there: train without --resume'
            in resumed.stderr)


def head_state(checkpoint: Path) -> dict:
    """Student and teacher heads of a checkpoint (the frozen ViT is not saved)."""
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    heads = {k: v for k, v in state['state_dict'].items()
             if k.startswith(('decode_head.', 'teacher_head.'))}
    assert any(k.startswith('teacher_head.') for k in heads)
    return heads


def final_eval(work_dir: Path) -> dict:
    return json.loads((work_dir / 'eval' / 'iter_6.json').read_text())


@pytest.fixture(scope='module')
def reference_run(python, tiny_config, tmp_path_factory) -> Path:
    """An uninterrupted 6-iteration run; returns its work_dir."""
    work_dir = tmp_path_factory.mktemp('reference')
    result = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'teacher/mIoU' in log and 'student/mIoU' in log
    assert 'teacher head:' in log and 'student head:' in log  # the two tables are titled
    assert 'stage 2 (EMA-teacher self-training) begins at iteration 3' in log
    assert 'mix.loss_ce' in log and 'tgt.loss_ce' in log and 'src.loss_ce' in log
    stage2_line = next(line for line in log.splitlines() if 'Iter(train) [5/6]' in line)
    assert 'mix.loss_ce' in stage2_line and 'tgt.loss_ce' not in stage2_line
    # both heads evaluated after each stage, with per-class IoU
    for it in (3, 6):
        record = json.loads((work_dir / 'eval' / f'iter_{it}.json').read_text())
        assert set(record) == {'iter', 'dataset', 'teacher', 'student'}
        assert record['dataset']['img_path'].endswith('leftImg8bit/val')
        assert 'road' in record['teacher']['per_class_iou']
    return work_dir


def test_kill_then_resume_continues_the_run(python, tiny_config,
                                            reference_run, tmp_path):
    # a checkpoint loads with weights_only=True (the compat allow-list)
    final_reference = head_state(reference_run / 'iter_6.pth')

    interrupted = tmp_path / 'interrupted'
    process = subprocess.Popen(
        [python, TRAIN, str(tiny_config), '--work-dir', str(interrupted),
         '--cfg-options', 'train_cfg.max_iters=100000'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    pointer = interrupted / 'last_checkpoint'  # written once iter_4.pth is complete
    while not (pointer.exists() and pointer.read_text().strip().endswith('iter_4.pth')):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)  # mid-stage-2, hard
    process.wait()

    resumed = run_tool(python, TRAIN, tiny_config, '--work-dir', interrupted,
                       '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert 'resumed' in log.lower()
    assert 'starting at iteration 4 (self_training)' in log
    final = head_state(interrupted / 'iter_6.pth')
    # same seed, same data order, same augmentation seeds: the resumed run
    # ends where an uninterrupted one does, teacher included (a teacher reset
    # to the student at resume would differ)
    for key, value in final_reference.items():
        torch.testing.assert_close(final[key], value, rtol=1e-4, atol=1e-5)
    reference_eval, resumed_eval = final_eval(reference_run), final_eval(interrupted)
    for branch in ('teacher', 'student'):
        assert (resumed_eval[branch]['metrics']['mIoU'] ==
                reference_eval[branch]['metrics']['mIoU'])
    # once more on the finished run: said, and nothing is trained or rewritten
    stamp = (interrupted / 'iter_6.pth').stat().st_mtime_ns
    again = run_tool(python, TRAIN, tiny_config, '--work-dir', interrupted, '--resume')
    assert again.returncode == 0, again.stderr[-3000:]
    assert (f'--resume: {interrupted}/iter_6.pth is iteration 6, and train_cfg.max_iters is 6: '
            'nothing is left to train.') in again.stderr
    # not "resume with a larger max_iters": the restored schedule would train at lr 0
    assert (f'fine-tune from it in a new --work-dir with --cfg-options '
            f'load_from={interrupted}/iter_6.pth and a longer schedule') in again.stderr
    # a UDA config: what fine-tuning does again, and how to spare it
    assert ('; this config starts stage 1 again at iteration 0 (custom_hooks.2.'
            'self_training_begin=0 goes on self-training, with the teacher of the checkpoint) '
            'and labels the target set again into the new work_dir (copy '
            f'{interrupted}/pseudo_labels to <new work_dir>/pseudo_labels first to reuse '
            'these pseudo-labels).') in again.stderr
    assert (interrupted / 'iter_6.pth').stat().st_mtime_ns == stamp


def test_fine_tuning_as_advised_reuses_the_pseudo_labels_and_keeps_the_teacher(
        python, tiny_config, reference_run, tmp_path):
    # the finished-run advice, followed: load_from, stage 2 from the start, the copied
    # pseudo-labels; the EMA teacher of the checkpoint goes on (it was replaced by the
    # student, and the target set labelled again)
    work_dir = tmp_path / 'longer'
    shutil.copytree(reference_run / 'pseudo_labels', work_dir / 'pseudo_labels')
    result = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--cfg-options',
                      f'load_from={reference_run}/iter_6.pth', 'train_cfg.max_iters=2',
                      'custom_hooks.2.self_training_begin=0')
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert f'pseudo-labels: reusing the complete cache {work_dir}/pseudo_labels' in log
    assert ('EMATeacherHook: the teacher of the loaded checkpoint (6 EMA updates) is kept '
            'and goes on averaging the student.') in log
    assert 'starting at iteration 0 (self_training)' in log
    saved = torch.load(work_dir / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert saved['meta']['ema_teacher'] == {'updates': 8}


def test_a_cache_of_other_settings_is_labelled_again_before_the_first_batch(
        python, tiny_config, reference_run, tmp_path):
    # every label file exists, but another run's (here: all car): the hook moves them
    # aside and labels again, and no batch the dataloader prefetched from them is trained
    # on (it was, when the hook restarted the dataloader only if a label file was missing)
    import cv2
    from mmseg_saot.datasets.pseudo_label_cache import fingerprint_hash
    work_dir = tmp_path / 'run'
    cache = work_dir / 'pseudo_labels'
    shutil.copytree(reference_run / 'pseudo_labels', cache)
    for label_file in (cache / 'labels').rglob('*.png'):
        cv2.imwrite(str(label_file), cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED) * 0 + 13)
    manifest = json.loads((cache / 'manifest.json').read_text())
    manifest['fingerprint']['labeler']['epsilon'] = 123.0
    manifest['config_hash'] = fingerprint_hash(manifest['fingerprint'])
    (cache / 'manifest.json').write_text(json.dumps(manifest))
    result = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(work_dir.glob('pseudo_labels.stale-*'))) == 1
    final, reference = head_state(work_dir / 'iter_6.pth'), head_state(reference_run / 'iter_6.pth')
    for key, value in reference.items():
        torch.testing.assert_close(final[key], value, rtol=1e-4, atol=1e-5)


def train_past_iteration_2(python, tiny_config, work_dir, **popen) -> subprocess.Popen:
    """A long training run (pipes for its output), returned once ``iter_2.pth`` is saved."""
    process = subprocess.Popen(
        [python, TRAIN, str(tiny_config), '--work-dir', str(work_dir),
         '--cfg-options', 'train_cfg.max_iters=100000'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.time() + 300
    pointer = work_dir / 'last_checkpoint'
    while not (pointer.exists() and pointer.read_text().strip().endswith('iter_2.pth')):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.02)
    return process


def test_resume_with_a_changed_schedule_is_refused_before_training(python, tiny_config,
                                                                   reference_run, tmp_path):
    # MMEngine restores the checkpoint's schedule over the config's: a run resumed with a
    # longer max_iters (the default end of its schedulers) trained on at the old schedule
    # (a PolyLR: lr 0 past the old end), silently
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    shutil.copy(reference_run / 'iter_4.pth', work_dir / 'iter_4.pth')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_4.pth'))
    saved_config = work_dir / Path(str(tiny_config)).name  # the run's own, as MMEngine saves it
    saved_config.write_text('# the config the run started with\n')
    resumed = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--resume',
                       '--cfg-options', 'train_cfg.max_iters=12')
    assert resumed.returncode == 2
    # the Runner saved this command's config over it before the refusal, which then
    # pointed at the work_dir for "the settings the run started with"
    assert saved_config.read_text() == '# the config the run started with\n'
    assert 'Traceback' not in resumed.stderr + resumed.stdout
    message = ' '.join(resumed.stderr.split())  # the message is wrapped to the terminal
    assert (f'error: --resume: {work_dir}/iter_4.pth was trained with other optimizer or '
            'schedule settings (param_scheduler.0.end: 12 in the config '
            '(train_cfg.max_iters), 6 in the checkpoint)') in message, message[-2000:]
    assert f'--cfg-options load_from={work_dir}/iter_4.pth' in message
    assert 'Iter(train)' not in resumed.stdout + resumed.stderr


def test_ctrl_c_saves_the_iteration_and_resume_ends_where_an_uninterrupted_run_does(
        python, tiny_config, reference_run, tmp_path):
    work_dir = tmp_path / 'interrupted'
    process = train_past_iteration_2(python, tiny_config, work_dir)
    pointer = work_dir / 'last_checkpoint'
    process.send_signal(signal.SIGINT)  # as Ctrl-C: training goes on to the iteration's end
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert 'Traceback' not in stdout + stderr
    stopped = next(line for line in stderr.splitlines() if line.startswith('Stopped after'))
    iteration = int(stopped.split()[3].rstrip(';'))
    assert 3 <= iteration <= 5  # the interval checkpoints are 2, 4, 6
    checkpoint = work_dir / f'iter_{iteration}.pth'
    assert stopped == (f'Stopped after iteration {iteration}; {checkpoint} holds the run. '
                       f'Continue with: python tools/train.py {tiny_config} --cfg-options '
                       f'train_cfg.max_iters=100000 --work-dir {work_dir} --resume')
    assert pointer.read_text() == str(checkpoint)

    resumed = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'starting at iteration {iteration}' in resumed.stdout + resumed.stderr
    final, reference = head_state(work_dir / 'iter_6.pth'), head_state(reference_run / 'iter_6.pth')
    for key, value in reference.items():
        torch.testing.assert_close(final[key], value, rtol=1e-4, atol=1e-5)


def test_resume_of_a_finished_run_runs_its_owed_final_validation(python, tiny_config,
                                                                reference_run, tmp_path):
    # a stop during the last iteration (or its validation) saved iter_6.pth and skipped
    # the final validation; --resume said "nothing is left to train" and it never ran
    work_dir = tmp_path / 'finished'
    shutil.copytree(reference_run, work_dir)
    checkpoint = work_dir / 'iter_6.pth'
    (work_dir / 'last_checkpoint').write_text(str(checkpoint))
    record = work_dir / 'eval' / 'iter_6.json'
    expected = json.loads(record.read_text())
    record.unlink()
    (work_dir / 'pending_validation').write_text('6\n')  # what such a stop leaves
    stamp = checkpoint.stat().st_mtime_ns
    # save_best (as the 20k configs): the CheckpointHook, never set up for training by
    # runner.val(), crashed saving the new best checkpoint
    result = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--resume',
                      '--cfg-options', 'default_hooks.checkpoint.save_best=mIoU')
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f'--resume: {checkpoint} is the last iteration (6), whose validation was cut '
            'short when the run stopped; running it now.') in result.stderr
    redone = json.loads(record.read_text())
    for branch in ('teacher', 'student'):
        assert redone[branch]['metrics']['mIoU'] == expected[branch]['metrics']['mIoU']
    assert not (work_dir / 'pending_validation').exists()
    assert checkpoint.stat().st_mtime_ns == stamp  # nothing trained
    assert [p.name for p in work_dir.glob('best_*.pth')] == ['best_mIoU_iter_6.pth']


def test_sigterm_to_the_process_group_saves_the_iteration_and_ends_every_process(
        python, tiny_config, tmp_path):
    # a batch scheduler (scancel, timeout) signals every process of the job: torch's own
    # handler ended the DataLoader workers, and the main process crashed mid-iteration
    # with "DataLoader worker ... is killed by signal: Terminated" and no checkpoint
    work_dir = tmp_path / 'terminated'
    process = train_past_iteration_2(python, tiny_config, work_dir, start_new_session=True)
    pointer = work_dir / 'last_checkpoint'
    os.killpg(process.pid, signal.SIGTERM)  # the main process and its DataLoader worker
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-3000:]  # 128 + SIGTERM
    assert 'Traceback' not in stdout + stderr
    assert 'SIGTERM: finishing this iteration' in stderr
    stopped = next(line for line in stderr.splitlines() if line.startswith('Stopped after'))
    checkpoint = work_dir / f'iter_{int(stopped.split()[3].rstrip(";"))}.pth'
    assert checkpoint.exists() and pointer.read_text() == str(checkpoint)
    with pytest.raises(ProcessLookupError):  # no worker left behind
        os.killpg(process.pid, 0)


def test_resume_with_an_empty_last_checkpoint_names_the_newest_checkpoint(
        python, tiny_config, reference_run, tmp_path):
    # stopped while MMEngine wrote work_dir/last_checkpoint: the file is empty
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    for name in ('iter_2.pth', 'iter_4.pth'):  # 4 > 2 by number, not by name alone
        shutil.copy(reference_run / name, work_dir / name)
    (work_dir / 'iter_10.pth.tmp').write_text('')  # not a checkpoint
    (work_dir / 'last_checkpoint').write_text('')
    resumed = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--resume')
    assert resumed.returncode == 2
    assert 'Traceback' not in resumed.stderr + resumed.stdout
    newest = work_dir / 'iter_4.pth'
    assert (f'error: --resume: {work_dir / "last_checkpoint"} is empty (the run was stopped '
            f'while writing it); resume from the newest checkpoint there: --resume '
            f'--cfg-options load_from={newest}') in resumed.stderr
    # the command it names continues the run from iteration 4 to the end
    resumed = run_tool(python, TRAIN, tiny_config, '--work-dir', work_dir, '--resume',
                       '--cfg-options', f'load_from={newest}')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'starting at iteration 4' in resumed.stdout + resumed.stderr
    assert (work_dir / 'iter_6.pth').exists()


def test_test_tool_prints_per_class_iou(python, tiny_config, reference_run,
                                        tmp_path):
    # in the training run's folder, as test.py's default work_dir is: the training
    # config saved there was overwritten by the test's (no training parts)
    run = tmp_path / 'run'
    shutil.copytree(reference_run, run)
    trained_with = (run / 'tiny.py').read_bytes()
    tested = run_tool(python, TEST, tiny_config, run / 'iter_6.pth', '--work-dir', run)
    assert tested.returncode == 0, tested.stderr[-3000:]
    output = tested.stdout + tested.stderr
    assert 'per class results' in output and 'road' in output
    assert (run / 'tiny.py').read_bytes() == trained_with
    [test_config] = [path for path in run.glob('*/tiny.py')]  # the test's log folder
    assert 'train_cfg = None' in test_config.read_text()
    # the run's saved config keeps '{work_dir}': a run from it writes into its own folder
    saved = (reference_run / 'tiny.py').read_text()
    assert "pseudo_label_dir='{work_dir}/pseudo_labels'" in saved
    assert f'{reference_run}/pseudo_labels' not in saved


def test_test_tool_predicts_unlabelled_images_without_the_training_data(
        python, tiny_config, tiny_data, reference_run, tmp_path):
    # images only, in a folder of their own; the training sets are not on this machine
    own = tmp_path / 'own' / 'leftImg8bit' / 'val'
    shutil.copytree(tiny_data / 'cs' / 'leftImg8bit' / 'val', own)
    config = tmp_path / 'own.py'
    config.write_text(
        f"_base_ = [{str(tiny_config)!r}]\n"
        f"test_dataloader = dict(dataset=dict(data_root={str(tmp_path / 'own')!r}, pipeline=["
        "dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]))\n"
        "test_evaluator = dict(format_only=True)\n"
        "train_dataloader = dict(dataset=dict(source=dict(data_root='/nonexistent')))\n")
    tested = run_tool(python, TEST, config, reference_run / 'iter_6.pth', '--work-dir',
                      tmp_path / 'test', '--out', tmp_path / 'pred', '--show-dir',
                      tmp_path / 'painted')  # painting built the training set before
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert len(list((tmp_path / 'pred').rglob('*.png'))) == len(list(own.rglob('*.png'))) > 0
    assert len(list((tmp_path / 'painted').rglob('*.png'))) == len(list(own.rglob('*.png')))


@pytest.mark.parametrize('workers', [0, 1])
def test_a_corrupt_val_image_is_one_line_naming_it_and_check_data(python, tiny_data,
                                                                   reference_run, tmp_path,
                                                                   workers):
    data = tmp_path / 'data'
    shutil.copytree(tiny_data, data)
    broken = sorted((data / 'cs' / 'leftImg8bit' / 'val').rglob('*.png'))[0]
    broken.write_bytes(b'not a png')
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    tested = run_tool(python, TEST, config, reference_run / 'iter_6.pth', '--work-dir',
                      tmp_path / 'test', '--cfg-options',
                      f'test_dataloader.num_workers={workers}')
    assert tested.returncode == 2
    assert 'Traceback' not in tested.stderr + tested.stdout
    assert (f'error: reading a data sample failed (AssertionError: failed to load image: '
            f'{broken}). `python tools/check_data.py {config} --cfg-options '
            f'test_dataloader.num_workers={workers}` lists') in tested.stderr  # as run


def test_mmseg_inference_apis_run_a_trained_checkpoint(tiny_data, tiny_config, reference_run,
                                                       tmp_path):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    checkpoint = reference_run / 'iter_6.pth'
    model = init_model(str(tiny_config), str(checkpoint), device='cpu')
    # the trained heads are the checkpoint's; the frozen ViT comes from the config
    state = model.state_dict()
    for key, value in head_state(checkpoint).items():
        torch.testing.assert_close(state[key], value)
    assert model.dataset_meta['classes'][:2] == ('road', 'sidewalk')
    image = str(sorted((tiny_data / 'cs' / 'leftImg8bit' / 'val').rglob('*.png'))[0])
    result = inference_model(model, image)
    assert tuple(result.pred_sem_seg.data.shape) == (1, 56, 84)
    assert int(result.pred_sem_seg.data.max()) < 19

    inferencer = MMSegInferencer(model=str(tiny_config), weights=str(checkpoint),
                                 device='cpu')
    outputs = inferencer(image, out_dir=str(tmp_path / 'out'))
    assert outputs['predictions'].shape == (56, 84)
    assert len(list((tmp_path / 'out' / 'pred').glob('*.png'))) == 1
    assert len(list((tmp_path / 'out' / 'vis').glob('*.png'))) == 1


def test_test_tool_with_test_time_augmentation(python, tiny_config, reference_run, tmp_path):
    checkpoint = reference_run / 'iter_6.pth'
    tested = run_tool(python, TEST, tiny_config, checkpoint, '--tta', '--work-dir',
                      tmp_path / 'tta')
    assert tested.returncode == 0, tested.stderr[-3000:]
    output = tested.stdout + tested.stderr
    assert 'per class results' in output and 'road' in output
    # a config without a TTA pipeline: the option is named, no traceback
    no_tta = tmp_path / 'no_tta.py'
    no_tta.write_text(tiny_config.read_text() + '\ntta_pipeline = None\n')
    tested = run_tool(python, TEST, no_tta, checkpoint, '--tta', '--work-dir', tmp_path / 'x')
    assert tested.returncode == 2
    assert 'Traceback' not in tested.stderr + tested.stdout
    assert f'error: --tta: {no_tta} defines no tta_pipeline. Add it' in tested.stderr
    # a misspelt TTA wrapper is named as tta_model, not as the model it wraps
    tested = run_tool(python, TEST, tiny_config, checkpoint, '--tta', '--work-dir',
                      tmp_path / 'x', '--cfg-options', 'tta_model.type=SegTTAModell')
    assert tested.returncode == 2
    message = ' '.join(tested.stderr.split())
    assert (f"error: --tta: {tiny_config}: tta_model.type='SegTTAModell' is not a "
            'registered mmseg::model type') in message, message[-2000:]
    assert "Did you mean 'SegTTAModel'?" in message


def test_resume_when_last_checkpoint_names_a_deleted_file_names_the_newest(tmp_path, capsys):
    from mmengine.config import Config
    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    cfg = Config(dict(resume=True))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_40.pth'))
    for name in ('iter_10.pth', 'iter_20.pth'):
        (tmp_path / name).write_bytes(b'')
    with pytest.raises(SystemExit) as stop:
        train.checkpoint_to_resume(cfg, str(tmp_path))
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f'error: --resume: {tmp_path}/last_checkpoint names {tmp_path}/iter_40.pth, which does '
        'not exist (deleted or moved); resume from the newest checkpoint there: --resume '
        f'--cfg-options load_from={tmp_path}/iter_20.pth\n')
    (tmp_path / 'iter_40.pth').write_bytes(b'')  # there again: resumed from
    assert train.checkpoint_to_resume(cfg, str(tmp_path)) == str(tmp_path / 'iter_40.pth')
    assert train.checkpoint_to_resume(Config(dict(resume=False)), str(tmp_path)) is None
    # checkpoints turned off in the config (default_hooks.checkpoint=None): still a hint
    (tmp_path / 'iter_40.pth').unlink()
    with pytest.raises(SystemExit):
        train.checkpoint_to_resume(Config(dict(resume=True, default_hooks=dict(checkpoint=None))),
                                   str(tmp_path))
    assert f'load_from={tmp_path}/iter_20.pth' in capsys.readouterr().err


def test_resume_finds_the_checkpoints_of_the_hooks_out_dir(tmp_path, capsys):
    # with default_hooks.checkpoint.out_dir they live in out_dir/<work_dir name>: the
    # advice said "no checkpoint is left there: train without --resume", and that new
    # run wrote over them
    from mmengine.config import Config
    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    work_dir, out = tmp_path / 'run', tmp_path / 'store'
    (out / 'run').mkdir(parents=True)
    work_dir.mkdir()
    for name in ('iter_500.pth', 'iter_1000.pth'):
        (out / 'run' / name).write_bytes(b'')
    (work_dir / 'last_checkpoint').write_text(str(out / 'run' / 'iter_1500.pth'))  # deleted
    cfg = Config(dict(resume=True, default_hooks=dict(checkpoint=dict(out_dir=str(out)))))
    with pytest.raises(SystemExit):
        train.checkpoint_to_resume(cfg, str(work_dir))
    assert f'--cfg-options load_from={out}/run/iter_1000.pth' in capsys.readouterr().err
    (work_dir / 'last_checkpoint').unlink()  # none: the newest there is resumed
    cfg = Config(dict(resume=True, work_dir=str(work_dir),
                      default_hooks=dict(checkpoint=dict(out_dir=str(out)))))
    train.choose_resume_source(cfg, load_from_given=False)
    assert cfg.load_from == str(out / 'run' / 'iter_1000.pth')


def test_resume_of_a_copied_run_uses_its_own_checkpoint(tmp_path, capsys):
    # cp -r a b keeps a's absolute path in b/last_checkpoint: --work-dir b --resume
    # continued from a/iter_20.pth, another run's file
    from mmengine.config import Config
    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    first, copy = tmp_path / 'a', tmp_path / 'b'
    for folder in (first, copy):
        folder.mkdir()
        (folder / 'iter_20.pth').write_bytes(b'')
        (folder / 'last_checkpoint').write_text(str(first / 'iter_20.pth'))
    cfg = Config(dict(resume=True, work_dir=str(copy), load_from=None))
    train.choose_resume_source(cfg, load_from_given=False)
    assert cfg.load_from == str(copy / 'iter_20.pth')
    assert train.checkpoint_to_resume(cfg, str(copy)) == str(copy / 'iter_20.pth')
    assert f'resuming from this run\'s {copy}/iter_20.pth' in capsys.readouterr().err
    cfg = Config(dict(resume=True, work_dir=str(first), load_from=None))  # its own: as before
    train.choose_resume_source(cfg, load_from_given=False)
    assert cfg.load_from is None


def test_the_resume_command_repeats_the_options_of_the_run():
    from types import SimpleNamespace

    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    argv = ['cfg.py', '--work-dir', 'old', '--amp', '--cfg-options', 'a.b=1',
            "c=[1, 2]", '--launcher=none', '--resume']
    args = SimpleNamespace(config='cfg.py', launcher='none')
    assert train.resume_command(args, '/runs/my run', argv) == (
        "python tools/train.py cfg.py --amp --cfg-options a.b=1 'c=[1, 2]' "
        "--work-dir '/runs/my run' --resume")
    args.launcher = 'pytorch'
    argv = ['cfg.py', '--launcher', 'pytorch', '--local-rank=0', '--cfg-options', 'a.b=1']
    assert train.resume_command(args, '/runs/r', argv) == (
        'the same launch with --work-dir /runs/r --resume (e.g. tools/dist_train.sh cfg.py '
        'NUM_GPUS --cfg-options a.b=1 --work-dir /runs/r --resume)')


def test_the_resume_command_puts_its_options_before_a_double_dash(monkeypatch):
    # after "--" argparse reads --work-dir and --resume as more positional arguments
    import shlex
    from types import SimpleNamespace
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args sets it when missing

    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    argv = ['--cfg-options', 'a=1', 'b=2', '--', 'cfg.py']
    args = train.parse_args(argv)
    assert (args.config, args.cfg_options) == ('cfg.py', {'a': 1, 'b': 2})
    command = train.resume_command(args, 'runs/r', argv)
    assert command == ('python tools/train.py --cfg-options a=1 b=2 --work-dir runs/r '
                       '--resume -- cfg.py')
    again = train.parse_args(shlex.split(command)[2:])
    assert (again.config, again.work_dir, again.resume) == ('cfg.py', 'runs/r', True)
    args = SimpleNamespace(config='cfg.py', launcher='pytorch')
    assert train.resume_command(args, 'r', argv).endswith(
        '(e.g. tools/dist_train.sh cfg.py NUM_GPUS --cfg-options a=1 b=2 --work-dir r '
        '--resume)')


def test_a_stop_before_any_checkpoint_repeats_the_command_load_from_included(tmp_path):
    # "continue with ... --resume" without load_from, and no checkpoint to resume: the
    # fine-tuning run restarted from scratch, its starting weights silently dropped
    import time
    from types import SimpleNamespace

    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    args = SimpleNamespace(config='cfg.py', launcher='none', resume=False)
    argv = ['cfg.py', '--cfg-options', 'load_from=/w/ft.pth', 'a=1']
    started = time.time()
    same = 'python tools/train.py cfg.py --cfg-options load_from=/w/ft.pth a=1 --work-dir ' \
        f'{tmp_path}'
    assert train.continue_command(args, str(tmp_path), started, argv) == same
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text(str(tmp_path / 'iter_2.pth'))  # an earlier run's, in the folder
    os.utime(pointer, (started - 60, started - 60))
    assert train.continue_command(args, str(tmp_path), started, argv) == same
    pointer.write_text(str(tmp_path / 'iter_4.pth'))  # this run saved one
    assert train.continue_command(args, str(tmp_path), started, argv) == (
        f'python tools/train.py cfg.py --cfg-options a=1 --work-dir {tmp_path} --resume')
    args.resume = True  # a resumed run: the folder's checkpoint is this run's
    os.utime(pointer, (started - 60, started - 60))
    assert train.continue_command(args, str(tmp_path), started, argv).endswith('--resume')


def test_the_resume_command_leaves_out_load_from():
    # with load_from set, --resume restarts from that checkpoint, not the run's last one
    from types import SimpleNamespace

    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    args = SimpleNamespace(config='cfg.py', launcher='none')
    argv = ['cfg.py', '--cfg-options', 'a.b=1', 'load_from=/w/iter_8.pth', 'c=2', '--amp']
    assert train.resume_command(args, 'r', argv) == (
        'python tools/train.py cfg.py --cfg-options a.b=1 c=2 --amp --work-dir r --resume')
    argv = ['cfg.py', '--resume', '--cfg-options', 'load_from=/w/iter_8.pth', '--amp']
    assert train.resume_command(args, 'r', argv) == (
        'python tools/train.py cfg.py --amp --work-dir r --resume')
    argv = ['cfg.py', '--cfg-options=load_from=/w/iter_8.pth']
    assert train.resume_command(args, 'r', argv) == (
        'python tools/train.py cfg.py --work-dir r --resume')
    argv = ['cfg.py', '--cfg', 'load_from=/w/iter_8.pth', 'a=1']  # argparse's prefix
    assert train.resume_command(args, 'r', argv) == (
        'python tools/train.py cfg.py --cfg a=1 --work-dir r --resume')


def test_resume_continues_this_work_dirs_run_not_the_configs_load_from(tmp_path, capsys):
    # a fine-tuning config (load_from in the file): --resume restarted from the
    # pretrained weights, since MMEngine resumes from load_from whenever it is set
    from mmengine.config import Config
    from tool_scripts import load_tool
    train = load_tool('tools/train.py')
    pretrained = str(tmp_path / 'pretrained.pth')
    work = tmp_path / 'run'
    work.mkdir()

    def chosen(load_from_given=False, **cfg):
        config = Config(dict(dict(resume=True, work_dir=str(work)), **cfg))
        train.choose_resume_source(config, load_from_given)
        return config.resume, config.get('load_from')

    # no checkpoint of this run yet: a fresh fine-tuning run from load_from
    assert chosen(load_from=pretrained) == (False, pretrained)
    assert 'no checkpoint of this run yet' in capsys.readouterr().err
    # checkpoints but no last_checkpoint (copied without it): the newest, not scratch
    for name in ('iter_10.pth', 'iter_20.pth'):
        (work / name).write_bytes(b'')
    assert chosen() == (True, str(work / 'iter_20.pth'))
    assert chosen(load_from=pretrained) == (True, str(work / 'iter_20.pth'))
    # with last_checkpoint: MMEngine's own pick (load_from cleared), checked as before
    (work / 'last_checkpoint').write_text(str(work / 'iter_10.pth'))
    assert chosen(load_from=pretrained) == (True, None)
    # a load_from given on this command line is the user's explicit choice
    assert chosen(load_from_given=True, load_from=pretrained) == (True, pretrained)
