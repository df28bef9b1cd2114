import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmseg_saot.utils import compat


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300)


def test_mmseg_models_import_without_compiled_mmcv():
    # mmcv-lite has no mmcv._ext: without the stub this import fails.
    result = run_python(
        'import importlib.util, sys\n'
        'assert importlib.util.find_spec("mmcv._ext") is None\n'
        'import mmseg_saot, mmseg.models, torch\n'
        'from mmcv.ops import point_sample\n'
        'out = point_sample(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 2))\n'
        'assert out.shape == (1, 2, 3)\n'
        'print(type(sys.modules["mmcv._ext"]).__name__)\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '_MissingCompiledOps'


def test_without_the_stub_mmseg_models_fails():
    # Proves the stub is what makes the import work on this stack.
    result = run_python('import mmseg.models')
    assert result.returncode != 0
    assert "mmcv._ext" in result.stderr


def test_compiled_op_call_names_the_op():
    import mmcv.ops
    with pytest.raises(RuntimeError, match='"nms" is not available'):
        mmcv.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)


def test_mmcv_collect_env_reports_no_compiler_as_without_the_stub():
    # it falls back to 'n/a' on ModuleNotFoundError only, which the stub prevents: the
    # stub's RuntimeError broke mmcv's (and mmseg's) environment report
    from mmcv.utils import collect_env
    env = collect_env()
    assert env['MMCV Compiler'] == env['MMCV CUDA Compiler'] == 'n/a'


def test_stub_hides_dunder_attributes():
    stub = compat._MissingCompiledOps('x')
    with pytest.raises(AttributeError):
        stub.__wrapped__
    assert callable(stub.roi_align_forward)


def test_real_extension_is_left_alone(monkeypatch):
    fake = types.ModuleType('mmcv._ext')
    monkeypatch.setitem(sys.modules, 'mmcv._ext', fake)
    assert compat.install_mmcv_ext_stub() is False
    assert sys.modules['mmcv._ext'] is fake


def test_real_extension_on_disk_is_left_alone(monkeypatch):
    # A compiled mmcv: find_spec locates mmcv._ext on disk.
    monkeypatch.delitem(sys.modules, 'mmcv._ext', raising=False)
    real_find_spec = compat.importlib.util.find_spec

    def find_spec(name, *args):
        if name == 'mmcv._ext':
            return object()
        return real_find_spec(name, *args)

    monkeypatch.setattr(compat.importlib.util, 'find_spec', find_spec)
    assert compat.install_mmcv_ext_stub() is False
    assert 'mmcv._ext' not in sys.modules


def _mmengine_like_meta() -> dict:
    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(np.float64(0.25))
    return dict(meta=dict(message_hub=dict(log_scalars={'loss': buffer}),
                          seed=np.int64(3), lr=np.array([0.1, 0.2]),
                          ratio=np.float32(0.5)),
                state_dict={'w': torch.ones(2)})


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(_mmengine_like_meta(), path)
    loaded = torch.load(path, weights_only=True)
    assert loaded['meta']['message_hub']['log_scalars']['loss'].mean() \
        == pytest.approx(0.375)
    assert loaded['meta']['seed'] == 3


def test_a_checkpoint_written_under_numpy_1_loads_with_weights_only(tmp_path):
    # numpy 1.x pickles its arrays and scalars as numpy.core.multiarray.*, numpy 2 as
    # numpy._core.*: a run saved before the upgrade could not be resumed
    import io
    import zipfile
    buffer = io.BytesIO()
    torch.save(_mmengine_like_meta(), buffer)
    path = tmp_path / 'numpy1.pth'
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, \
            zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith('data.pkl'):
                assert b'numpy._core.multiarray' in data
                data = data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
            dst.writestr(item, data)
    loaded = torch.load(path, weights_only=True)
    assert loaded['meta']['message_hub']['log_scalars']['loss'].mean() \
        == pytest.approx(0.375)
    assert loaded['meta']['seed'] == 3


class NotAllowed:
    pass


def test_weights_only_still_refuses_other_objects(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': NotAllowed()}, path)
    with pytest.raises(Exception, match='NotAllowed'):
        torch.load(path, weights_only=True)


def test_mmengine_meta_fails_without_the_allow_list(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(_mmengine_like_meta(), path)
    result = run_python(
        'import torch\n'
        f'torch.load({str(path)!r}, weights_only=True)\n')
    assert result.returncode != 0
    assert 'weights_only' in result.stderr.lower() or \
        'WeightsUnpickler' in result.stderr


def test_only_history_buffer_statistics_may_be_looked_up(tmp_path):
    # A pickle that calls getattr(np.ndarray, 'tofile') must stay refused.
    class Sneaky:
        def __reduce__(self):
            return getattr, (np.ndarray, 'tofile')

    path = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(Exception, match='only'):
        torch.load(path, weights_only=True)
