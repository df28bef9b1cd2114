"""tools/benchmark_pseudo_labels.py: --count-ops (operator calls per part of a call), and
usage errors of --model and --size."""
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
