from pathlib import Path

import pytest
from mmengine.config import Config

from mmseg_saot.utils.config_inheritance import stale_variable_warnings

REPO = Path(__file__).resolve().parents[2]
LABELER = """lab = dict(type='L', eps=0.05, rho=1.0)
root = 'data/x'
dataset = dict(type='D', data_root=root + '/train')
"""
EXPERIMENT = """_base_ = ['./labeler.py']
iters = 200
total = iters + 10
train_cfg = dict(max_iters=total, val_interval=iters)
train_dataloader = dict(dataset={{_base_.dataset}})
custom_hooks = [dict(type='H', labeler={{_base_.lab}}, begin=iters)]
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / 'labeler.py').write_text(LABELER)
    (tmp_path / 'experiment.py').write_text(EXPERIMENT)
    return tmp_path


def warnings_of(folder, child):
    path = folder / 'child.py'
    path.write_text("_base_ = ['./experiment.py']\n" + child)
    return stale_variable_warnings(str(path), Config.fromfile(str(path)))


def test_a_variable_the_bases_used_is_named_with_the_entries_that_keep_its_value(folder):
    found = warnings_of(folder, 'iters = 1000\nlab = dict(eps=0.1)\nroot = "/data"\n')
    path = folder / 'child.py'
    assert found == [
        f"{path} sets iters, but experiment.py had already used its old value 200 when read "
        '(MMEngine copies a variable where it is used): custom_hooks.0.begin, '
        f'train_cfg.val_interval keep the old value. Set them in {path} too.',
        # through {{_base_.lab}}: the options the child changes are named
        f'{path} sets lab, but experiment.py had already used its old value when read '
        '(MMEngine copies a variable where it is used): custom_hooks.0.labeler.eps keeps '
        f'the old value. Set it in {path} too.',
        # a path built from a root in another file of the chain
        f"{path} sets root, but experiment.py had already used its old value 'data/x' when "
        'read (MMEngine copies a variable where it is used): '
        f'train_dataloader.dataset.data_root keeps the old value. Set it in {path} too.']


def test_computed_entries_are_named_by_their_key_and_set_entries_are_not(folder):
    hook = 'custom_hooks = [dict(type="H", begin=iters)]\n'
    # total = iters + 10 holds no copy of 200: the top-level entry is named
    found = warnings_of(folder, 'iters = 1000\n' + hook +
                        'train_cfg = dict(_delete_=True, max_iters=5)\n'
                        'custom_hooks = [dict(type="H", labeler=dict(type="L"), begin=iters)]\n')
    assert found == []  # every entry that used it replaced
    # a dict merged into the base's: the entries it does not set keep the old value
    found = warnings_of(folder, 'iters = 1000\n' + hook + 'train_cfg = dict(max_iters=1010)\n')
    assert len(found) == 1 and ': train_cfg.val_interval keeps the old value.' in found[0]
    assert warnings_of(folder, 'iters = 1000\n' + hook +
                       'train_cfg = dict(max_iters=1010, val_interval=iters)\n') == []
    # nothing holds a copy: the computed top-level entry is named
    (folder / 'experiment.py').write_text(EXPERIMENT.replace('val_interval=iters',
                                                             'val_interval=50'))
    found = warnings_of(folder, 'iters = 1000\n' + hook)
    assert len(found) == 1 and ': train_cfg keeps the old value.' in found[0]
    # the same value again, or a variable no base used
    assert warnings_of(folder, 'iters = 200\nunused = 3\n') == []


def test_the_shipped_configs_raise_no_warning():
    for path in sorted((REPO / 'configs' / 'saot').glob('*.py')):
        assert stale_variable_warnings(str(path), Config.fromfile(str(path))) == [], path


def test_load_config_prints_the_warning_and_goes_on(folder, capsys):
    from mmseg_saot.utils.run_config import load_config
    path = folder / 'child.py'
    path.write_text("_base_ = ['./experiment.py']\niters = 7\n")
    cfg = load_config(str(path))
    assert cfg.iters == 7 and cfg.custom_hooks[0].begin == 200
    assert f'warning: {path} sets iters, but experiment.py' in capsys.readouterr().err
