"""tools/benchmark_pseudo_labels.py: --count-ops (operator calls per part of a call), and
usage errors of --model and --size."""
import types
from pathlib import Path

import pytest
import torch
from tool_scripts import load_tool

from mmseg_saot.ot import _operators, sinkhorn

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'benchmark_pseudo_labels.py'


def test_count_operator_calls_splits_a_solve_into_its_parts():
    tool = load_tool(TOOL)
    refresh = _operators.KernelOperator.refresh
    cost = torch.rand(40, 30, generator=torch.Generator().manual_seed(0))
    counts = tool.count_operator_calls(lambda: sinkhorn(cost, epsilon=0.1, rho=1.0))
    assert counts['kernel rebuild/absorb'] > 0 and counts['final marginal error'] > 0
    assert counts['label transfer'] == 0  # not called by a bare solve
    assert counts['other'] > 0
    assert counts['total'] == sum(n for part, n in counts.items() if part != 'total')
    assert _operators.KernelOperator.refresh is refresh  # the tags are removed again


def test_calls_outside_every_part_count_as_other():
    tool = load_tool(TOOL)
    outside = tool.count_operator_calls(lambda: torch.ones(3) + 1)
    assert outside == {'kernel rebuild/absorb': 0, 'final marginal error': 0,
                       'label transfer': 0, 'other': 2, 'total': 2}


@pytest.mark.parametrize('args, message', [
    (['--size', '10', '10'], '--size 10 10: height and width must be multiples of the patch '
     'size 14 of timm vit_small_patch14_dinov2; use e.g. --size 14 14'),
    (['--model', 'vit_small_patch16_224', '--size', '224', '230'], '--size 224 230: height '
     'and width must be multiples of the patch size 16 of timm vit_small_patch16_224; use '
     'e.g. --size 224 240'),
    (['--model', 'resnet18'], '--model: timm model "resnet18" is not a Vision Transformer; '
     'use a timm ViT such as'),
    (['--model', 'nosuchmodel'], '--model: timm has no model "nosuchmodel"; use a timm ViT '
     'name such as'),
])
def test_bad_model_or_size_is_a_usage_error_before_any_image(tmp_path, capsys, args, message):
    tool = load_tool(TOOL)
    with pytest.raises(SystemExit) as stop:  # no demo images there: nothing may be read
        tool.main(['--demo-root', str(tmp_path / 'none'), *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f'error: {message}' in err and 'Traceback' not in err


def test_a_preset_size_that_does_not_fit_the_model_names_the_preset():
    tool = load_tool(TOOL)
    assert tool.size_problem((518, 1036), 14, 'timm vit_large_patch14_dinov2') is None
    assert tool.size_problem((518, 1036), 16, 'timm vit_base_patch16_224', 'paper') == (
        "the paper preset's size 518 1036: height and width must be multiples of the patch "
        'size 16 of timm vit_base_patch16_224; use e.g. --size 528 1040')


def write_demo(root: Path, num_sources: int, num_targets: int) -> Path:
    """A demo folder of tiny random scenes in the GTA5 and Cityscapes layouts."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for kind, count in (('source', num_sources), ('target', num_targets)):
        for i in range(count):
            image = Image.fromarray(rng.integers(0, 255, (28, 56, 3), dtype=np.uint8))
            if kind == 'target':
                path = root / 'cityscapes' / 'leftImg8bit' / 'train' / 'c' / f'{i}_leftImg8bit.png'
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path)
                continue
            (root / 'gta5' / 'images').mkdir(parents=True, exist_ok=True)
            (root / 'gta5' / 'labels').mkdir(parents=True, exist_ok=True)
            image.save(root / 'gta5' / 'images' / f'{i:05d}.png')
            labels = rng.integers(0, 3, (28, 56), dtype=np.uint8)
            Image.fromarray(labels).save(root / 'gta5' / 'labels' / f'{i:05d}_labelTrainIds.png')
    return root


@pytest.mark.parametrize('args, message', [
    (['--sources', '1'], 'argument --sources: must be an integer >= 2, got "1"'),
    (['--sources', '0'], 'argument --sources: must be an integer >= 2, got "0"'),
    (['--targets', '0'], 'argument --targets: must be an integer >= 1, got "0"'),
    (['--sources', '4'], '--sources 4: {root} has 3 demo source images; use at most '
     '--sources 3'),
    (['--sources', '2', '--targets', '5'], '--targets 5: {root} has 10 demo target images and '
     '8 of them are the warm-up batch; use at most --targets 2'),
])
def test_too_few_or_too_many_images_are_usage_errors(tmp_path, capsys, args, message):
    root = write_demo(tmp_path / 'demo', num_sources=3, num_targets=10)
    with pytest.raises(SystemExit) as stop:
        load_tool(TOOL).main(['--demo-root', str(root), *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f'error: {message.format(root=root)}' in err and 'Traceback' not in err


def test_images_beyond_the_free_memory_are_named():
    tool = load_tool(TOOL)
    assert tool.memory_problem(200, (518, 1036), available=2**30) == (
        '200 images of 518x1036 (the bank, the timed targets and the warm-up batch) take '
        '2.0 GiB in memory, and this machine has 1.0 GiB free; use fewer --sources or '
        '--targets or a smaller --size')
    assert tool.memory_problem(10, (518, 1036), available=2**30) is None
    assert tool.memory_problem(10**6, (518, 1036), available=None) is None  # unknown


def quick_tool(monkeypatch):
    """The tool with a labeller that trains its metric for 2 steps only."""
    import functools
    tool = load_tool(TOOL)
    labelers = tool.import_labelers()
    quick = types.SimpleNamespace(SAOTLabeler=functools.partial(labelers.SAOTLabeler,
                                                                metric_steps=2))
    monkeypatch.setattr(tool, 'import_labelers', lambda: quick)
    return tool


def test_the_table_gives_the_real_k_and_the_exact_command(tmp_path, monkeypatch):
    tool = quick_tool(monkeypatch)
    root = write_demo(tmp_path / 'my demo', num_sources=3, num_targets=10)
    out = tmp_path / 'table.md'
    argv = ['--demo-root', str(root), '--sources', '3', '--targets', '1', '--size', '14', '28',
            '--solver', 'dense', '--out', str(out)]
    table = tool.main(argv)
    assert 'Labeller: SAOTLabeler defaults (method saot, K=3, solver dense), bank of 3 ' \
           'source images; 1 target images timed.' in table
    assert (f"Command: `python tools/benchmark_pseudo_labels.py --demo-root '{root}' --sources "
            f"3 --targets 1 --size 14 28 --solver dense --out {out}`") in table
    assert out.read_text() == table


def test_the_banks_features_count_on_a_cpu_run(monkeypatch, capsys):
    # paper preset with ViT-S/14 (dim 384): the 208 images take 2.08 GiB, the bank's
    # 64 x 37x74 features 0.50 GiB at their peak; 2.5 GiB free holds the images only
    tool = load_tool(TOOL)
    import mmseg_saot.utils.machine as machine
    monkeypatch.setattr(machine, 'available_memory', lambda: int(2.5 * 2**30))
    with pytest.raises(SystemExit) as stop:
        tool.main(['--preset', 'paper', '--model', 'vit_small_patch14_dinov2'])
    assert stop.value.code == 2
    assert ("error: 208 images of 518x1036 (the bank, the timed targets and the warm-up "
            "batch) and the bank's features take 2.6 GiB in memory, and this machine has "
            '2.5 GiB free') in capsys.readouterr().err
    vit_l = tool.StandInViT(depth=1)  # patch 14, dim 1024
    assert tool.source_feature_bytes(64, (518, 1036), vit_l, 'cpu') == 2 * 64 * 2738 * 1024 * 4
    assert tool.source_feature_bytes(64, (518, 1036), vit_l, 'cuda') == 0  # on the GPU


def test_the_one_off_fit_time_holds_no_backbone_pass(tmp_path, monkeypatch):
    # the warm-up batch's forward pass was timed as part of "one-off fit"
    import re
    import time
    tool = quick_tool(monkeypatch)
    real_features = tool.features

    def slow_features(*args):
        time.sleep(2.0)
        return real_features(*args)

    monkeypatch.setattr(tool, 'features', slow_features)
    root = write_demo(tmp_path / 'demo', num_sources=3, num_targets=10)
    table = tool.main(['--demo-root', str(root), '--sources', '3', '--targets', '1',
                       '--size', '14', '28', '--solver', 'dense'])
    fit = float(re.search(r'\| one-off fit \(metric \+ prototypes\) \| ([\d.]+) s \|',
                          table).group(1))
    assert fit < 2.0
    assert ', fp32.' in table  # a CPU run


def test_an_interrupt_reports_the_targets_timed_so_far(tmp_path, monkeypatch, capsys):
    # it wrote nothing and printed no rate: a long GPU run lost every timed batch
    tool = quick_tool(monkeypatch)
    real_features = tool.features
    calls = []

    def features(backbone, images, *args):
        calls.append(len(images))
        if len(calls) == 5:  # bank, warm-up, probe, one timed batch of 8, Ctrl-C
            raise KeyboardInterrupt
        return real_features(backbone, images, *args)

    monkeypatch.setattr(tool, 'features', features)
    root = write_demo(tmp_path / 'demo', num_sources=3, num_targets=24)
    out = tmp_path / 'table.md'
    out.write_text('an earlier whole table\n')
    with pytest.raises(KeyboardInterrupt):
        tool.main(['--demo-root', str(root), '--sources', '3', '--targets', '16',
                   '--size', '14', '28', '--solver', 'dense', '--out', str(out)])
    partial = (tmp_path / 'table.partial.md').read_text()
    assert '**Interrupted after 8 of 16 target images**' in partial
    assert '8 target images timed' in partial and '| end to end |' in partial
    assert partial in capsys.readouterr().out
    assert out.read_text() == 'an earlier whole table\n'
    assert tool.STOPPED['message'] == (
        f'The rates of the 8 target images timed are above and in {tmp_path}/table.partial.md.')


def test_a_demo_root_without_images_is_a_usage_error_naming_the_option(tmp_path, capsys):
    # it ended with exit 1 and "no demo images under ...", not naming --demo-root
    tool = load_tool(TOOL)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit) as stop:
        tool.main(['--demo-root', str(tmp_path / 'empty'), '--size', '14', '28'])
    assert stop.value.code == 2
    assert (f'error: --demo-root {tmp_path}/empty: no demo source and target images under '
            'it; run `make demo-data` first') in capsys.readouterr().err
