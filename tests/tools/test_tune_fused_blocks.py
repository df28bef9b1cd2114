"""tools/tune_fused_blocks.py: usage errors, and a clear one without a CUDA GPU or Triton."""
from unittest import mock

import pytest
from tool_scripts import load_tool

from mmseg_saot.ot import _fused_step


@pytest.fixture
def tool():
    return load_tool('tools/tune_fused_blocks.py')


def usage_error(tool, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        tool.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return err


@pytest.mark.parametrize('value', ['0', '-3', 'many'])
def test_n_must_be_positive(tool, capsys, value):
    assert (f'argument --n: must be an integer >= 1, got "{value}"'
            in usage_error(tool, ['--n', value], capsys))


def test_without_cuda_it_says_it_needs_a_gpu(tool, capsys):
    with mock.patch('torch.cuda.is_available', return_value=False):
        err = usage_error(tool, ['--n', '64'], capsys)
    assert 'error: this tool times the fused CUDA iteration and needs a CUDA GPU' in err


def test_without_triton_it_says_so(tool, capsys, monkeypatch):
    monkeypatch.setattr(_fused_step, '_kernels', lambda: None)
    with mock.patch('torch.cuda.is_available', return_value=True):
        err = usage_error(tool, ['--n', '64'], capsys)
    assert 'error: this tool times the fused Triton kernels and needs Triton' in err


def test_out_is_checked_before_timing(tool, tmp_path, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('')
    err = usage_error(tool, ['--out', str(afile / 'table.md')], capsys)
    assert f'argument --out: "{afile}/table.md": {afile} exists and is not a folder' in err
