"""Every config loads, and every experiment builds its model."""
from pathlib import Path

import pytest
from mmengine import Config
from mmseg.registry import MODELS

from mmseg_saot.utils.cfg_option_keys import unread_key_problem

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
EXPERIMENTS = sorted((CONFIGS / 'saot').glob('*.py'))
ALL = sorted(CONFIGS.rglob('*.py'))


@pytest.mark.parametrize('path', ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads(path):
    Config.fromfile(str(path))


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_builds_its_model(path):
    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports.imports == ['mmseg_saot']
    backbone = cfg.model.backbone
    # no hub here: random weights of the same architecture
    backbone.update(pretrained=False, checkpoint=None)
    model = MODELS.build(cfg.model)
    head = model.decode_head
    embed_dim = model.backbone.embed_dim
    assert head.in_channels == [embed_dim] * len(model.backbone.out_indices)
    assert head.num_classes == (21 if path.name == 'voc.py' else 19)
    patch = model.backbone.patch_size
    assert cfg.model.data_preprocessor.size_divisor == patch
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_gta2cs_crops_are_whole_patches():
    cfg = Config.fromfile(str(CONFIGS / 'saot' / 'gta2cs.py'))
    assert all(side % 14 == 0 for side in cfg.gta5_crop_size)
    assert cfg.model.backbone.model_name == 'vit_large_patch14_dinov2'


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_has_test_time_augmentation_around_its_test_scale(path):
    cfg = Config.fromfile(str(path))  # for tools/test.py --tta
    assert cfg.tta_model.type == 'SegTTAModel'
    augment = next(t for t in cfg.tta_pipeline if t['type'] == 'TestTimeAug')
    resizes = augment['transforms'][0]
    assert len(resizes) >= 3 and [f['direction'] for f in augment['transforms'][1]] == \
        ['horizontal', 'horizontal']
    if path.name == 'voc.py':  # MMSegmentation's VOC augmentation (scale factors)
        assert 1.0 in [r['scale_factor'] for r in resizes]
        return
    test_scale = next(t['scale'] for t in cfg.test_dataloader.dataset.pipeline
                      if t['type'] == 'Resize')
    assert tuple(test_scale) in [tuple(r['scale']) for r in resizes]


def test_the_readme_short_run_recipe_names_the_right_entries():
    # README, "Train, test, multi-GPU": --cfg-options custom_hooks.2.self_training_begin=2000
    # param_scheduler.1.end=4000 with train_cfg.max_iters=4000
    from mmseg_saot.utils.run_options import check_run_options
    cfg = Config.fromfile(CONFIGS / 'saot' / 'gta2cs.py')
    readme = (CONFIGS.parent / 'README.md').read_text()
    options = {'train_cfg.max_iters': 4000, 'custom_hooks.2.self_training_begin': 2000,
               'param_scheduler.1.end': 4000}
    assert ' '.join(f'{k}={v}' for k, v in options.items() if k != 'train_cfg.max_iters') \
        in readme
    cfg.merge_from_dict(options)
    assert cfg.custom_hooks[2]['type'] == 'UDAStageHook'
    assert cfg.param_scheduler[1]['type'] == 'PolyLR'
    assert cfg.param_scheduler[1]['end'] == cfg.train_cfg.max_iters
    check_run_options(cfg, 'gta2cs.py')


def _documented_cfg_options():
    """``(config, key)`` of every ``--cfg-options KEY=VALUE`` that the README and the
    tools' docstrings give with a config of ``configs/``."""
    import re
    texts = [(CONFIGS.parent / 'README.md').read_text()]
    texts += [path.read_text() for path in sorted((CONFIGS.parent / 'tools').glob('*.py'))]
    found = []
    for text in texts:
        text = re.sub(r'\\\\?\n\s*', ' ', text.replace('\\\\\n', ' '))  # continued lines
        for command in re.finditer(r'(configs/[\w/]+\.py)[^`\n]*?--cfg-options((?: +[\w.]+=\S+)+)',
                                   text):
            for item in command.group(2).split():
                found.append((command.group(1), item.split('=')[0]))
    return found


def test_documented_cfg_options_name_entries_of_their_config():
    documented = _documented_cfg_options()
    assert ('configs/saot/gta2cs.py', 'train_dataloader.dataset.target.dataset.data_root') \
        in documented
    for config, key in documented:
        loaded = Config.fromfile(CONFIGS.parent / config)
        # not a variable of the file, copied before --cfg-options apply (the tools refuse it)
        assert unread_key_problem(loaded, key) is None, (config, key)
        node = loaded._cfg_dict
        *parents, _ = key.split('.')
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
            assert node is not None, f'{config}: --cfg-options {key}: no entry {part!r}'


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_has_a_fixed_seed_so_resume_repeats_the_run(path):
    # mmengine draws a fresh seed when none is set, and builds the dataloaders before
    # --resume loads the checkpoint: a resumed run would shuffle and augment differently
    seed = (Config.fromfile(str(path)).get('randomness') or {}).get('seed')
    assert isinstance(seed, int)
