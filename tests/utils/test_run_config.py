"""Loading a run's config: --cfg-options, the work_dir and its '{work_dir}' paths."""
import pytest

from mmseg_saot.utils.run_config import load_run_config


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


def test_a_config_that_does_not_load_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    from mmseg_saot.utils.run_config import load_config
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
            # it said "in one of its _base_ files" without naming which
            (child, f'config "{child}" (its _base_ file {broken}), line 2: syntax error'),
            (undefined, f'config "{undefined}" cannot be loaded (NameError: name '
             "'undefined_name' is not defined)."),
            (orphan, f'config "{orphan}": the file {tmp_path}/gone.py it names does not '
             'exist.')]:
        with pytest.raises(SystemExit) as stop:
            load_config(str(path))
        assert stop.value.code == 2
        assert f'error: {message}' in capsys.readouterr().err


def test_a_config_path_that_is_a_folder_names_a_config_in_it(tmp_path, capsys):
    # it said the folder "does not exist"
    from mmseg_saot.utils.run_config import load_config
    (tmp_path / 'b.py').write_text('')
    (tmp_path / 'a.py').write_text('')
    with pytest.raises(SystemExit) as stop:
        load_config(str(tmp_path))
    assert stop.value.code == 2
    assert (f'error: config file "{tmp_path}" is a folder; give a config file, e.g. '
            f'{tmp_path}/a.py.') in capsys.readouterr().err


def test_a_list_entry_the_config_does_not_have_is_named(tmp_path, capsys):
    from mmseg_saot.utils.run_config import list_index_problem, load_config
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


def test_a_negative_list_index_is_named_with_the_entry_it_meant():
    # it read as a name under the list: "e.g. custom_hooks.0.-1"
    from mmengine.config import Config

    from mmseg_saot.utils.run_config import list_index_problem
    cfg = Config(dict(custom_hooks=[dict(type='A', x=1), dict(type='B', x=2)]))
    assert list_index_problem(cfg, 'custom_hooks.-1.x') == (
        'custom_hooks is a list of 2, indexed from 0 (negative indexes are not read); '
        'e.g. custom_hooks.1.x')
    assert list_index_problem(cfg, 'custom_hooks.-3').endswith('e.g. custom_hooks.0')


def test_a_name_under_a_list_or_a_key_under_a_value_is_one_line(tmp_path, capsys):
    # MMEngine raised a bare TypeError for both
    from mmseg_saot.utils.run_config import load_config
    config = tmp_path / 'c.py'
    config.write_text("param_scheduler = [dict(end=3), dict(end=5)]\n"
                      "train_cfg = dict(max_iters=10)\nmodel = dict(crop=(64, 64))\n")
    for key, message in (
            ('param_scheduler.end', 'param_scheduler is a list of 2; name an entry by its '
             'index, e.g. param_scheduler.0.end'),
            # MMEngine's TypeError said to set _delete_=True, which no option can
            ('model.crop.0', 'model.crop is the tuple (64, 64), whose entries cannot be set '
             'one by one; set the whole value, e.g. "model.crop=(64, 64)" with that entry '
             'changed'),
            ('train_cfg.max_iters.x', 'train_cfg.max_iters is 10, which has no entries; set '
             'train_cfg.max_iters=... itself, or, to give it entries (a dict), add '
             'train_cfg.max_iters._delete_=True beside train_cfg.max_iters.x=...')):
        with pytest.raises(SystemExit) as stop:
            load_config(str(config), {key: 4000})
        assert stop.value.code == 2
        assert capsys.readouterr().err == f'error: --cfg-options {key}=...: {message}.\n'
    # as advised (MMEngine's own way to write a dict over a value): it was refused too
    cfg = load_config(str(config), {'train_cfg.max_iters._delete_': True,
                                    'train_cfg.max_iters.x': 4000})
    assert cfg.train_cfg.max_iters == {'x': 4000}


def test_the_saved_config_keeps_work_dir_templates(tmp_path):
    from types import SimpleNamespace

    from mmengine.config import Config

    from mmseg_saot.utils.run_config import load_run_config, save_config_with_templates
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
