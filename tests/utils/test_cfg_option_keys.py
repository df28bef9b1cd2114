import pytest
from mmengine.config import Config

from mmseg_saot.utils.cfg_option_keys import unread_key_problem

BASE = """labeler = dict(type='L', epsilon=0.05, rho=1.0)
"""
CONFIG = """_base_ = ['./base.py']
root = 'data/demo'
iters = 200
source = dict(type='S', data_root=f'{root}/gta5', pipeline=[])
crop = (64, 64)
model = dict(type='M', crop=crop)
train_dataloader = dict(dataset=dict(source, pipeline=[dict(type='P')]))
val_dataloader = dict(dataset=dict(type='T', data_root=f'{root}/cityscapes'))
test_dataloader = dict(dataset=dict(type='T', data_root=f'{root}2/other'))  # not under root
train_cfg = dict(max_iters=iters + 10)
custom_hooks = [dict(type='H', labeler={{_base_.labeler}}, source=source)]
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / 'base.py').write_text(BASE)
    path = tmp_path / 'config.py'
    path.write_text(CONFIG)
    return str(path), Config.fromfile(str(path))


def test_read_keys_pass_new_ones_included(config):
    _, cfg = config
    for key in ('model.crop', 'custom_hooks.0.labeler.epsilon', 'train_cfg.max_iters',
                'randomness.seed', 'env_cfg.cudnn_benchmark', 'work_dir', 'load_from',
                'runner_type'):  # the tools branch on it (it was refused as unread)
        assert unread_key_problem(cfg, key) is None, key


def test_a_copied_variable_names_its_copies_with_the_sub_key(config):
    _, cfg = config
    problem = unread_key_problem(cfg, 'labeler.epsilon')
    assert problem.startswith('labeler is a variable of the config file')
    assert 'changes nothing' in problem
    assert problem.endswith('hold its value instead: custom_hooks.0.labeler.epsilon')
    problem = unread_key_problem(cfg, 'crop')
    assert problem.endswith('hold its value instead: model.crop')


def test_a_variable_that_entries_were_built_from_names_them(config):
    _, cfg = config
    # a root that paths extend
    problem = unread_key_problem(cfg, 'root')
    assert problem.endswith('built from it instead: train_dataloader.dataset.data_root, '
                            'val_dataloader.dataset.data_root, custom_hooks.0.source.data_root')
    # a dict that entries copy with an override (dict(source, pipeline=...)); the exact
    # copy in custom_hooks counts too, other variables do not
    problem = unread_key_problem(cfg, 'source.data_root')
    assert problem.endswith('hold its value instead: custom_hooks.0.source.data_root')
    cfg.custom_hooks[0].source = dict(cfg.source, pipeline=['x'])
    problem = unread_key_problem(cfg, 'source.data_root')
    assert problem.endswith('built from it instead: train_dataloader.dataset.data_root, '
                            'custom_hooks.0.source.data_root')


def test_a_computed_variable_points_at_the_file(config):
    path, cfg = config
    problem = unread_key_problem(cfg, 'iters', path)
    assert problem.endswith(f'set the entries that {path} computes from it instead')


def test_a_new_unread_key_is_refused_with_the_closest_key(config):
    _, cfg = config
    problem = unread_key_problem(cfg, 'modle.crop')
    assert problem == ("the config has no key 'modle' (did you mean 'model'?) and nothing "
                       'reads a new one, so the option would be ignored')
    # the closest key a variable: it was suggested, and the next run refused it as one
    problem = unread_key_problem(cfg, 'labelr.epsilon')
    assert problem == ("the config has no key 'labelr'; did you mean 'labeler'? labeler is a "
                       'variable of the config file: the entries that use it took its value '
                       'when the file was read, so changing it now changes nothing; set the '
                       'entries that hold its value instead: custom_hooks.0.labeler.epsilon')
    assert unread_key_problem(cfg, 'qqq') == ("the config has no key 'qqq' and nothing reads "
                                              'a new one, so the option would be ignored')
    assert 'before --cfg-options apply' in unread_key_problem(cfg, 'custom_imports.imports')


def test_load_config_stops_before_merging(config, capsys):
    from mmseg_saot.utils.run_config import load_config
    path, _ = config
    with pytest.raises(SystemExit) as stop:
        load_config(path, {'model.crop': (1, 1), 'labeler.rho': 2.0})
    assert stop.value.code == 2
    assert ('error: --cfg-options labeler.rho=...: labeler is a variable of the config file'
            in capsys.readouterr().err)
    cfg = load_config(path, {'custom_hooks.0.labeler.rho': 2.0})
    assert cfg.custom_hooks[0].labeler.rho == 2.0


def test_keys_the_tools_set_from_their_options_name_the_option(config):
    # train.py sets cfg.resume from --resume, and every tool cfg.launcher from --launcher,
    # after --cfg-options apply: a value given there would be silently overwritten
    _, cfg = config
    assert unread_key_problem(cfg, 'resume') == (
        "resume is set by the tools after --cfg-options apply, which overwrites the value "
        "given here; use tools/train.py's --resume")
    assert unread_key_problem(cfg, 'launcher').endswith(
        'use the --launcher of tools/train.py and tools/test.py (other tools run as one '
        'process)')


def test_a_top_level_data_preprocessor_beside_the_models_own_is_refused(config):
    # MMEngine uses the top-level one only where model has none: with model's own (every
    # shipped config), data_preprocessor.size_divisor=28 changed nothing, silently
    _, cfg = config
    cfg.model.data_preprocessor = dict(type='SegDataPreProcessor', size_divisor=14)
    assert unread_key_problem(cfg, 'data_preprocessor.size_divisor') == (
        'the model has its own data_preprocessor, which MMEngine uses instead of the '
        'top-level one; set model.data_preprocessor.size_divisor')
    del cfg.model['data_preprocessor']
    assert unread_key_problem(cfg, 'data_preprocessor.size_divisor') is None
