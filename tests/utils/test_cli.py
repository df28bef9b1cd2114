import argparse
import datetime

import pytest
import torch

from mmseg_saot.utils.cli import (LAUNCHER_ENV, CfgOptionsAction,
                                  check_checkpoint_fits_or_exit, check_checkpoint_or_exit,
                                  check_launcher_env_or_exit, enable_amp,
                                  ensure_folder_or_exit, interrupt_exits, load_run_config,
                                  user_errors_exit)


def _exit_message(path, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_checkpoint_of_tensors_passes(tmp_path, capsys):
    path = tmp_path / 'iter_1.pth'
    torch.save({'meta': {'iter': 1}, 'state_dict': {'w': torch.ones(2)}}, path)
    check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert capsys.readouterr().err == ''


def test_a_legacy_format_checkpoint_passes(tmp_path, capsys):
    # not a zip file, so it cannot be memory-mapped: loaded in full instead
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, path, _use_new_zipfile_serialization=False)
    check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert capsys.readouterr().err == ''


def test_the_check_maps_zip_checkpoints_instead_of_reading_them(tmp_path, monkeypatch):
    path = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert calls == [dict(map_location='cpu', weights_only=True, mmap=True)]


def test_missing_truncated_and_garbage_files_name_the_option(tmp_path, capsys):
    assert _exit_message(tmp_path / 'nope.pth', capsys) == \
        f'error: CHECKPOINT: checkpoint "{tmp_path / "nope.pth"}" does not exist.\n'
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.ones(64)}}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('not a checkpoint')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    for path in (truncated, garbage, empty):
        message = _exit_message(path, capsys)
        assert message.startswith(f'error: CHECKPOINT: "{path}" is not a readable checkpoint (')
        assert 'tools/train.py' in message
        assert 'set to `False`' not in message  # never torch's advice to drop weights_only


def test_foreign_objects_are_refused_and_weights_only_stays_on(tmp_path, capsys):
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {}, 'when': datetime.date(2020, 1, 1)}, path)
    message = _exit_message(path, capsys)
    assert '(Unsupported global: GLOBAL datetime.date)' in message
    with pytest.raises(Exception):
        torch.load(path)  # the check allow-listed nothing


class _Head(torch.nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv_seg = torch.nn.Conv2d(4, classes, 1)
        self.bn = torch.nn.BatchNorm2d(4)


class _Wrapper(torch.nn.Module):  # DDP / TTA-model style: the model as .module
    def __init__(self, module):
        super().__init__()
        self.module = module


def _fits(model, path) -> None:
    checkpoint = check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    check_checkpoint_fits_or_exit(model, checkpoint, str(path), 'cfg.py')


def _fit_message(model, path, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _fits(model, path)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_checkpoint_of_the_model_fits_through_wrappers_and_prefixes(tmp_path, capsys):
    head = _Head()
    path = tmp_path / 'iter_1.pth'
    torch.save({'meta': {}, 'state_dict': head.state_dict()}, path)
    _fits(_Wrapper(_Wrapper(_Head())), path)
    prefixed = tmp_path / 'ddp.pth'  # saved from a DDP-wrapped model, extra key
    state = {f'module.{k}': v for k, v in head.state_dict().items()}
    torch.save(dict(state, extra=torch.ones(1)), prefixed)  # no 'state_dict' wrapper
    _fits(_Head(), prefixed)
    assert capsys.readouterr().err == ''


def test_frozen_parameters_may_be_absent_but_not_misshapen(tmp_path, capsys):
    model = _Head()
    model.conv_seg.requires_grad_(False)  # e.g. a frozen backbone saved in the state dict
    path = tmp_path / 'head_only.pth'
    torch.save({'state_dict': {k: v for k, v in model.state_dict().items()
                               if not k.startswith('conv_seg.')}}, path)
    _fits(model, path)
    assert capsys.readouterr().err == ''
    path = tmp_path / 'other_frozen.pth'
    torch.save({'state_dict': _Head(classes=5).state_dict()}, path)
    assert '2 weights have another shape' in _fit_message(model, path, capsys)


def test_missing_weights_are_named(tmp_path, capsys):
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.w': torch.ones(2)}}, path)
    message = _fit_message(_Head(), path, capsys)
    assert message.startswith(f'error: CHECKPOINT: "{path}" does not fit the model of cfg.py: '
                              "7 of the model's 7 weights are missing (conv_seg.weight, "
                              'conv_seg.bias, bn.weight, ... (4 more)).')
    assert 'tools/train.py' in message


def test_other_shapes_are_named(tmp_path, capsys):
    path = tmp_path / 'five_classes.pth'
    torch.save({'state_dict': _Head(classes=5).state_dict()}, path)
    message = _fit_message(_Head(classes=3), path, capsys)
    assert ('2 weights have another shape (conv_seg.weight ((5, 4, 1, 1) in the checkpoint, '
            '(3, 4, 1, 1) in the model), conv_seg.bias ((5,) in the checkpoint, (3,) in the '
            'model))') in message
    assert 'missing' not in message


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


def test_interrupt_exits_turns_ctrl_c_into_a_message_and_code_130(capsys):
    with pytest.raises(SystemExit) as stop:
        with interrupt_exits('The cache is kept.'):
            raise KeyboardInterrupt
    assert stop.value.code == 130
    assert capsys.readouterr().err == 'Interrupted. The cache is kept.\n'
    with interrupt_exits():  # nothing interrupted: nothing happens
        pass


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
    check_launcher_env_or_exit(launcher)  # all there: passes
    monkeypatch.delenv(needed[0])
    with pytest.raises(SystemExit) as exit_info:
        check_launcher_env_or_exit(launcher)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
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


def test_load_run_config_names_where_an_unusable_work_dir_came_from(tmp_path, capsys):
    afile = tmp_path / 'file'
    afile.write_text('x')
    config = tmp_path / 'cfg.py'
    config.write_text(f'work_dir = {str(afile)!r}\n')
    for work_dir, source in [(str(afile), '--work-dir'),
                             (None, f'work_dir (set in {config} or --cfg-options)')]:
        with pytest.raises(SystemExit):
            load_run_config(str(config), work_dir=work_dir)
        assert capsys.readouterr().err.startswith(f'error: {source}: {afile} exists and is '
                                                  'not a folder')
    cfg = load_run_config(str(config), work_dir=str(tmp_path / 'run'))
    assert cfg.work_dir == str(tmp_path / 'run') and (tmp_path / 'run').is_dir()



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


def test_a_config_that_does_not_load_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    from mmseg_saot.utils.cli import load_config
    broken = tmp_path / 'broken.py'
    broken.write_text("_base_ = []\nmodel = dict(\n")
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = [{str(broken)!r}]\n")
    undefined = tmp_path / 'undefined.py'
    undefined.write_text("model = dict(a=undefined_name)\n")
    orphan = tmp_path / 'orphan.py'
    orphan.write_text("_base_ = ['gone.py']\n")
    for path, message in [
            (broken, f'config "{broken}", line 2: syntax error: \'(\' was never closed.'),
            (child, f'config "{child}" (in one of its _base_ files), line 2: syntax error'),
            (undefined, f'config "{undefined}" cannot be loaded (NameError: name '
             "'undefined_name' is not defined)."),
            (orphan, f'config "{orphan}": the file {tmp_path}/gone.py it names does not '
             'exist.')]:
        with pytest.raises(SystemExit) as stop:
            load_config(str(path))
        assert stop.value.code == 2
        assert f'error: {message}' in capsys.readouterr().err


def test_a_list_entry_the_config_does_not_have_is_named(tmp_path, capsys):
    from mmseg_saot.utils.cli import list_index_problem, load_config
    config = tmp_path / 'c.py'
    config.write_text("custom_hooks = [dict(type='A'), dict(type='B'), dict(type='C')]\n"
                      "param_scheduler = []\nmodel = dict(head=dict(in_index=[0]))\n")
    with pytest.raises(SystemExit) as stop:
        load_config(str(config), {'custom_hooks.3.type': 'Foo'})
    assert stop.value.code == 2
    assert ('error: --cfg-options custom_hooks.3.type=...: custom_hooks has 3 entries (0-2), '
            'not 3.') in capsys.readouterr().err
    cfg = load_config(str(config), {'custom_hooks.2.type': 'Foo', 'model.head.new': 1})
    assert cfg.custom_hooks[2].type == 'Foo' and cfg.model.head.new == 1
    assert list_index_problem(cfg, 'param_scheduler.0.end') == 'param_scheduler is an empty list'
    assert list_index_problem(cfg, 'model.head.in_index.1') == \
        'model.head.in_index has 1 entry (0-0), not 1'


def test_a_checkpoint_folder_is_named_as_one(tmp_path, capsys):
    assert f'error: CHECKPOINT: "{tmp_path}" is a folder; give the checkpoint file in it (e.g. ' \
        f'{tmp_path}/iter_<N>.pth).' in _exit_message(tmp_path, capsys)


def test_the_saved_config_keeps_work_dir_templates(tmp_path):
    from types import SimpleNamespace

    from mmengine.config import Config

    from mmseg_saot.utils.cli import load_run_config, save_config_with_templates
    source = tmp_path / 'exp.py'
    source.write_text("pseudo_label_dir = '{work_dir}/pseudo_labels'\n"
                      "train_dataloader = dict(dataset=dict(target=dict("
                      "pseudo_label_dir='{work_dir}/pseudo_labels')))\n"
                      "load_from = None\n")
    work_dir = str(tmp_path / 'run1')
    cfg = load_run_config(str(source), work_dir=work_dir)
    assert cfg.train_dataloader.dataset.target.pseudo_label_dir == f'{work_dir}/pseudo_labels'
    cfg.load_from = f'{work_dir}/iter_4.pth'  # set later, by a tool: saved as used
    runner = SimpleNamespace(cfg=cfg, work_dir=work_dir, timestamp='t')
    save_config_with_templates(runner, cfg)
    saved = Config.fromfile(str(tmp_path / 'run1' / 'exp.py'))
    assert saved.pseudo_label_dir == '{work_dir}/pseudo_labels'
    assert saved.train_dataloader.dataset.target.pseudo_label_dir == '{work_dir}/pseudo_labels'
    assert saved.load_from == f'{work_dir}/iter_4.pth'
    # a run from the saved file with another --work-dir writes into its own folder
    again = load_run_config(str(tmp_path / 'run1' / 'exp.py'), work_dir=str(tmp_path / 'run2'))
    assert again.train_dataloader.dataset.target.pseudo_label_dir == \
        f'{tmp_path}/run2/pseudo_labels'


def test_launcher_none_in_one_of_several_processes_stops(monkeypatch, capsys):
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(SystemExit) as exit_info:
        check_launcher_env_or_exit('none')
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(
        'error: --launcher is none (the default), but this is one of 2 processes started '
        'together (WORLD_SIZE=2, set by torchrun): each would run the whole job')
    monkeypatch.setenv('WORLD_SIZE', '1')
    check_launcher_env_or_exit('none')  # one process: fine


def test_a_head_trained_on_other_frozen_backbone_weights_is_refused(tmp_path, capsys):
    from mmseg_saot.models.backbones import DINOv2Backbone

    def model(seed):
        torch.manual_seed(seed)  # random ViT weights: another seed, other weights
        built = _Head()
        built.backbone = DINOv2Backbone(model_name='vit_small_patch14_dinov2', out_indices=1)
        return built
    trained, tested = model(0), model(1)
    path = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': trained.state_dict()}, path)
    message = _fit_message(tested, path, capsys)
    assert message.startswith(f'error: CHECKPOINT: "{path}" was trained with other frozen ViT '
                              'weights than cfg.py (with its --cfg-options) gives (their '
                              'sha256 differs)')
    _fits(model(0), path)  # the same weights
    older = tmp_path / 'older.pth'  # written before the digest was saved: not compared
    torch.save({'state_dict': {k: v for k, v in trained.state_dict().items()
                               if not k.endswith('frozen_vit_sha256')}}, older)
    _fits(tested, older)
    assert capsys.readouterr().err == ''
