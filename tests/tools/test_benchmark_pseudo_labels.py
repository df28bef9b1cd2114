"""tools/benchmark_pseudo_labels.py --count-ops: operator calls per part of a call."""
from pathlib import Path

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
