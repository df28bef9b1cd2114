"""The one place that knows how MMSegmentation 1.2.2 breaks on this stack.

Two breakages are mended here, each only where it occurs, without editing an
installed package:

1. ``mmcv-lite`` ships no compiled ``mmcv._ext``, yet ``mmseg.models`` imports
   ``mmcv.ops`` unguarded, so ``import mmseg.models`` fails.
   :func:`install_mmcv_ext_stub` registers a stand-in module *only when the
   real extension is missing*. Importing through it works; calling a compiled
   op raises a :class:`RuntimeError` that names the op and the fix. Pure-Python
   ops (e.g. ``mmcv.ops.point_sample``) keep working.
2. ``torch >= 2.6`` loads with ``weights_only=True`` by default, and MMEngine's
   checkpoints carry a few non-tensor types in their ``meta`` (its
   ``HistoryBuffer``, numpy arrays and scalars). :func:`allow_mmengine_checkpoint_types`
   allow-lists exactly those types. ``weights_only`` is never turned off: a
   checkpoint is untrusted input.

:func:`apply` runs both and is called once by ``import mmseg_saot`` before
anything imports ``mmseg``.
"""
import importlib.machinery
import importlib.util
import pickle
import sys
import types
import warnings
from typing import Callable, List

EXT_NAME = 'mmcv._ext'


# what mmcv.utils.collect_env reads of the compiled ops: without them it reports 'n/a'
# (it falls back only on ModuleNotFoundError, which the stand-in below prevents)
_NO_BUILD_INFO = frozenset({'get_compiler_version', 'get_compiling_cuda_version'})


class _MissingCompiledOps(types.ModuleType):
    """Stand-in for ``mmcv._ext`` whose attributes are ops that explain why
    they cannot run."""

    def __getattr__(self, name: str) -> Callable:
        # ``inspect``, ``pickle`` and ``hasattr`` probe dunder names; they must
        # see an ordinary missing attribute.
        if name.startswith('__') and name.endswith('__'):
            raise AttributeError(name)
        if name in _NO_BUILD_INFO:  # mmcv's collect_env says 'n/a' without the ops
            return lambda: 'n/a'

        def unavailable_op(*args, **kwargs):
            raise RuntimeError(
                f'mmcv compiled op "{name}" is not available: this '
                'environment has mmcv-lite (no CUDA/C++ ops). Install a '
                'compiled mmcv 2.0/2.1 matching your torch to use components '
                f'that need "{name}"; mmseg_saot itself never needs it.')

        unavailable_op.__name__ = name
        return unavailable_op


def has_real_mmcv_ext() -> bool:
    """Whether a real (or already registered) ``mmcv._ext`` can be imported."""
    if EXT_NAME in sys.modules:
        return True
    try:
        return importlib.util.find_spec(EXT_NAME) is not None
    except (ImportError, ValueError):
        return False


def install_mmcv_ext_stub() -> bool:
    """Register the ``mmcv._ext`` stand-in if, and only if, it is missing.

    Returns:
        bool: True if the stand-in was installed, False if a real extension
        (or an earlier registration) was found and left untouched.
    """
    if importlib.util.find_spec('mmcv') is None or has_real_mmcv_ext():
        return False
    stub = _MissingCompiledOps(
        EXT_NAME, 'mmseg_saot stand-in: mmcv compiled ops are not installed')
    # find_spec() on a registered module reads its __spec__
    stub.__spec__ = importlib.machinery.ModuleSpec(EXT_NAME, loader=None)
    sys.modules[EXT_NAME] = stub
    import mmcv
    mmcv._ext = stub
    return True


def mmengine_checkpoint_types() -> List[object]:
    """The non-tensor types found in MMEngine checkpoints' ``meta``.

    Returns:
        list: classes and reconstructors to pass to
        ``torch.serialization.add_safe_globals``.
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, '_core') else \
        np.core.multiarray
    safe = [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct,
            multiarray.scalar]
    if hasattr(np, '_core'):
        # a checkpoint written under numpy 1.x names these numpy.core.multiarray.*
        safe += [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
                 (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    # Each numpy dtype has its own class (np.dtypes.Float64DType, ...).
    safe += [type(np.dtype(code)) for code in np.typecodes['All']
             if code not in 'OVMm']
    # HistoryBuffer pickles its statistics table as getattr(HistoryBuffer,
    # 'mean'), ...: a getattr restricted to exactly that.
    safe.append((_history_buffer_statistic, 'builtins.getattr'))
    return safe


def _history_buffer_statistic(owner: object, name: str) -> Callable:
    """``getattr`` as seen by the ``weights_only`` unpickler: only the
    statistics methods of MMEngine's ``HistoryBuffer`` may be looked up."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = set(HistoryBuffer._statistics_methods) | {
        'min', 'max', 'current', 'mean'}
    if owner is not HistoryBuffer or name not in allowed:
        raise pickle.UnpicklingError(
            f'checkpoint asks for getattr({owner!r}, {name!r}); only '
            'HistoryBuffer statistics are allowed with weights_only=True.')
    return getattr(owner, name)


def allow_mmengine_checkpoint_types() -> None:
    """Allow-list MMEngine's checkpoint types for ``weights_only`` loading."""
    import torch
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has no weights_only allow-list
        add(mmengine_checkpoint_types())


def quiet_pkg_resources_warning() -> None:
    """Silence setuptools' deprecation notice for ``pkg_resources``.

    MMEngine 0.10.7 resolves ``mmseg::`` config bases through
    ``pkg_resources`` (hence ``setuptools<81`` in our requirements), and
    setuptools warns on every such import; the notice is not actionable for
    our users.
    """
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                            category=UserWarning)


def apply() -> None:
    """Mend the known breakages; safe to call more than once."""
    install_mmcv_ext_stub()
    allow_mmengine_checkpoint_types()
    quiet_pkg_resources_warning()
