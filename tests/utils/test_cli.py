import argparse
import os
import signal
import subprocess
import sys

import pytest
import torch

from mmseg_saot.utils.cli import (LAUNCHER_ENV, LOCAL_RANK_ENV, CfgOptionsAction,
                                  check_launcher_env_or_exit, enable_amp,
                                  ensure_folder_or_exit, interrupt_exits, user_errors_exit)


def launcher_refusal(launcher, capsys):
    """What check_launcher_env_or_exit prints as it stops (exit code 2)."""
    with pytest.raises(SystemExit) as exit_info:
        check_launcher_env_or_exit(launcher)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def device(monkeypatch):
    import mmengine.device

    def use(name):
        monkeypatch.setattr(mmengine.device, 'get_device', lambda: name)
    return use


def test_amp_without_an_accelerator_is_a_clear_message(device, capsys):
    from mmengine.config import Config
    device('cpu')
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    with pytest.raises(SystemExit) as exit_info:
        enable_amp(cfg)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ('error: --amp needs a GPU (or an NPU, MLU or MUSA device) '
                                       'and this machine has none; train without --amp.\n')
    assert cfg.optim_wrapper.type == 'OptimWrapper'


def test_amp_on_a_gpu_switches_the_optim_wrapper(device, capsys):
    from mmengine.config import Config
    device('cuda')
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='AdamW'))))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    other = Config(dict(optim_wrapper=dict(type='MyWrapper')))
    with pytest.raises(SystemExit):
        enable_amp(other)
    assert '"MyWrapper"' in capsys.readouterr().err
    # a scoped name was refused ('needs "OptimWrapper", the config has
    # "mmengine.OptimWrapper"'), and a config without optim_wrapper ended in a traceback
    scoped = Config(dict(optim_wrapper=dict(type='mmengine.OptimWrapper')))
    enable_amp(scoped)
    assert scoped.optim_wrapper.type == 'AmpOptimWrapper'
    with pytest.raises(SystemExit) as stop:
        enable_amp(Config(dict()))
    assert stop.value.code == 2
    assert 'the config has no optim_wrapper' in capsys.readouterr().err


def test_interrupt_exits_turns_ctrl_c_into_a_message_and_code_130(capsys):
    with pytest.raises(SystemExit) as stop:
        with interrupt_exits('The cache is kept.'):
            raise KeyboardInterrupt
    assert stop.value.code == 130
    assert capsys.readouterr().err == 'Interrupted. The cache is kept.\n'
    with interrupt_exits():  # nothing interrupted: nothing happens
        pass
    progress = []  # a message function says how far the work got at the stop
    with pytest.raises(SystemExit):
        with interrupt_exits(lambda: f'{len(progress)} done.'):
            progress += ['a', 'b']
            raise KeyboardInterrupt
    assert capsys.readouterr().err == 'Interrupted. 2 done.\n'


def test_interrupt_exits_turns_sigterm_into_a_message_and_code_143():
    # SIGTERM's default action ended a tool at once, without a word or any cleanup
    script = ('import os, signal\n'
              'from mmseg_saot.utils.cli import interrupt_exits\n'
              'with interrupt_exits("The cache is kept."):\n'
              '    try:\n'
              '        os.kill(os.getpid(), signal.SIGTERM)\n'
              '    finally:\n'
              '        print("cleaned up")\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 143, result.stderr[-2000:]
    assert result.stdout == 'cleaned up\n'
    assert result.stderr == 'Terminated (SIGTERM). The cache is kept.\n'


def test_interrupt_exits_keeps_a_sigterm_handler_already_there_and_restores_the_default():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
    try:
        with interrupt_exits():
            os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signal.getsignal(signal.SIGTERM) is previous
    with interrupt_exits():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _cfg_options_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='train.py')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    return parser


def test_cfg_options_read_as_mmengine_reads_them():
    from mmengine.config import DictAction
    items = ['train_cfg.max_iters=100', 'model.backbone.out_indices=[5, 11]', 'a.b=x=y',
             'c=', 'd=(1,2)', 'e=True']
    reference = argparse.ArgumentParser()
    reference.add_argument('--cfg-options', nargs='+', action=DictAction)
    ours = _cfg_options_parser().parse_args(['--cfg-options', *items]).cfg_options
    assert ours == reference.parse_args(['--cfg-options', *items]).cfg_options
    assert ours['model.backbone.out_indices'] == [5, 11] and ours['a.b'] == 'x=y'


@pytest.mark.parametrize('item, reason', [
    ('train_cfg.max_iters', 'is not KEY=VALUE'),
    ('11]', 'is not KEY=VALUE'),  # the tail of an unquoted "x=[5, 11]"
    ('=5', 'is not KEY=VALUE'),
    ('train_cfg..max_iters=5', 'is not KEY=VALUE'),
    ('model.backbone.out_indices=[5,', 'Imbalanced brackets'),
    # MMEngine recursed without end on it (RecursionError, 41 lines of traceback)
    ('model.decode_head.loss_decode=dict(type=CrossEntropyLoss,loss_weight=1.0)',
     'dict(...) is no --cfg-options value; set its entries as dotted keys'),
])
def test_a_malformed_cfg_option_is_a_usage_error_naming_it(item, reason, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cfg_options_parser().parse_args(['--cfg-options', 'a=1', item])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"train.py: error: --cfg-options: {item!r}" in err
    assert reason in err and 'Traceback' not in err


@pytest.mark.parametrize('launcher', sorted(LAUNCHER_ENV))
def test_a_launcher_without_its_environment_names_what_is_missing(launcher, monkeypatch,
                                                                   capsys):
    needed = LAUNCHER_ENV[launcher]
    for name in needed:
        monkeypatch.setenv(name, '0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # slurm and mpi need it
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    check_launcher_env_or_exit(launcher)  # all there: passes
    monkeypatch.delenv(needed[0])
    err = launcher_refusal(launcher, capsys)
    assert err.startswith(f'error: --launcher {launcher}: the environment lacks {needed[0]};')
    assert {'pytorch': 'tools/dist_train.sh', 'slurm': 'srun', 'mpi': 'mpirun'}[launcher] in err
    check_launcher_env_or_exit('none')


def test_ensure_folder_creates_parents_and_refuses_files(tmp_path, capsys):
    folder = tmp_path / 'a' / 'b'
    ensure_folder_or_exit(str(folder), '--out')
    assert folder.is_dir()
    ensure_folder_or_exit(str(folder), '--out')  # exists: fine
    afile = tmp_path / 'file'
    afile.write_text('x')
    for path, message in [(afile, f'--out: {afile} exists and is not a folder'),
                          (afile / 'sub', f'--out: cannot create the folder {afile / "sub"}')]:
        with pytest.raises(SystemExit) as exit_info:
            ensure_folder_or_exit(str(path), '--out')
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith(f'error: {message}')
    assert afile.read_text() == 'x'


def test_user_errors_exit_leaves_other_errors_with_their_traceback():
    with pytest.raises(ValueError, match='a bug of ours'):
        with user_errors_exit():
            raise ValueError('a bug of ours')


class _BadSample(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        from mmseg_saot.datasets.layout import DataLayoutError
        raise DataLayoutError('/data/x.png is missing.\nExpected layout: data/x/*.png.')


@pytest.mark.parametrize('workers', [0, 1])
def test_a_user_error_raised_in_a_dataloader_worker_prints_its_own_message(workers, capsys):
    loader = torch.utils.data.DataLoader(_BadSample(), num_workers=workers)
    with pytest.raises(SystemExit) as stop:
        with user_errors_exit():
            next(iter(loader))
    assert stop.value.code == 2
    # not torch's "Caught DataLayoutError in DataLoader worker process 0. Original Traceback"
    assert capsys.readouterr().err == ('error: /data/x.png is missing.\n'
                                       'Expected layout: data/x/*.png.\n')


@pytest.mark.parametrize('launcher', ['pytorch', 'mpi'])
def test_more_processes_than_gpus_on_a_machine_stops(launcher, monkeypatch, capsys):
    for name in LAUNCHER_ENV[launcher]:
        monkeypatch.setenv(name, '0')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0,1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    name = LOCAL_RANK_ENV[launcher]
    monkeypatch.setenv(name, '1')
    check_launcher_env_or_exit(launcher)  # the second GPU: fine
    monkeypatch.setenv(name, '2')
    assert launcher_refusal(launcher, capsys) == (
        f'error: --launcher {launcher}: this is process 2 of its machine ({name}=2), but the '
        'machine has 2 GPU(s) (CUDA_VISIBLE_DEVICES=0,1): one process per GPU. Start at most '
        '2 per machine (tools/dist_train.sh CONFIG 2), or make more GPUs visible.\n')


def test_processes_without_cuda_are_not_counted_against_gpus(monkeypatch):
    for name in LAUNCHER_ENV['pytorch']:
        monkeypatch.setenv(name, '0')
    monkeypatch.setenv('LOCAL_RANK', '7')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    check_launcher_env_or_exit('pytorch')  # CPU processes (gloo): no GPU needed


def test_launcher_none_in_one_of_several_processes_stops(monkeypatch, capsys):
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert launcher_refusal('none', capsys).startswith(
        'error: --launcher is none (the default), but this is one of 2 processes started '
        'together (WORLD_SIZE=2, set by torchrun): each would run the whole job')
    monkeypatch.setenv('WORLD_SIZE', '1')
    check_launcher_env_or_exit('none')  # one process: fine


@pytest.mark.parametrize('launcher', ['slurm', 'mpi'])
def test_slurm_or_mpi_without_cuda_points_to_torchrun(launcher, monkeypatch, capsys):
    # MMEngine's init_dist calls torch.cuda.set_device (slurm: a modulo by 0 GPUs)
    for name in LAUNCHER_ENV[launcher]:
        monkeypatch.setenv(name, '0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert launcher_refusal(launcher, capsys) == (
        f'error: --launcher {launcher} needs CUDA GPUs (MMEngine gives each process one) and '
        'this machine has none; for processes on CPUs start them with torchrun: '
        'tools/dist_train.sh CONFIG NUM_PROCESSES (--launcher pytorch).\n')
