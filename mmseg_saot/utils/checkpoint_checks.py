"""Check a checkpoint before the runner loads it: readable weights-only, and holding
every weight of the model in its shapes, trained on the same frozen backbone weights."""
import os.path as osp
from typing import Any, Optional, Sequence

from mmseg_saot.utils.cli import exit_with
from mmseg_saot.utils.config_types import has_type
from mmseg_saot.utils.errors import load_failure_reason


def check_checkpoint_or_exit(path: str, option: str) -> Any:
    """Stop with a readable message if ``path`` is not a loadable checkpoint.

    Loads it as the runner will (``weights_only=True``, MMEngine's types allowed by
    :mod:`mmseg_saot.utils.compat`), so a missing, truncated or foreign file is
    reported here, naming ``option``, instead of as a traceback from inside the
    runner (whose torch message would suggest turning ``weights_only`` off).

    Args:
        path: the checkpoint file.
        option: where it came from, e.g. ``'CHECKPOINT'`` or ``'load_from'``.

    Returns:
        The loaded checkpoint, memory-mapped where the file allows (for
        :func:`check_checkpoint_fits_or_exit`, so the file is parsed once).
    """
    import pickle
    import struct

    import torch
    if osp.isdir(path):
        exit_with(f'{option}: "{path}" is a folder; give the checkpoint file in it (e.g. '
                  f'{osp.join(path, "iter_<N>.pth")}).')
    if '://' in path and not osp.exists(path):
        exit_with(f'{option}: "{path}" is a remote address; checkpoints are read from local '
                  'files here (they are checked before the run). Download it and give its '
                  'local path.')
    if not osp.isfile(path):
        exit_with(f'{option}: checkpoint "{path}" does not exist.')
    try:
        return _load_weights_only(torch, path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, KeyError,
            IndexError, TypeError, UnicodeDecodeError, struct.error) as err:
        # (a text file read as a legacy pickle: its bytes are opcodes with bad arguments)
        reason = load_failure_reason(err)
        exit_with(f'{option}: "{path}" is not a readable checkpoint ({reason}). '
                  'Give a .pth written by tools/train.py (or any MMEngine checkpoint of '
                  'tensors); files holding other Python objects are refused, as '
                  'weights-only loading stays on.')


def _load_weights_only(torch, path: str):
    """``torch.load`` as the runner does, without reading the tensors' data.

    Zip checkpoints (torch's format since 1.6) are memory-mapped, so only the pickled
    structure is read and checked; the runner's own load then reads the weights once.
    Files in the legacy format cannot be mapped and are loaded in full.
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except RuntimeError as err:
        if 'mmap can only be used' not in str(err):
            raise
        return torch.load(path, map_location='cpu', weights_only=True)


def check_checkpoint_fits_or_exit(model, checkpoint: Any, path: str, config: str,
                                  option: str = 'CHECKPOINT') -> None:
    """Stop if ``checkpoint`` (read from ``path``) does not hold every weight of ``model``.

    MMEngine loads checkpoints non-strictly: a checkpoint of another model, or of
    this one with other settings (classes, head width), only logs a warning, and the
    run then evaluates randomly initialised layers. Call this once the runner has
    built the model (wrappers such as DDP or the TTA model are looked through); it
    names the missing and the mismatched weights. Extra weights in the checkpoint
    are left to MMEngine's warning. Frozen parameters may be absent (the model keeps
    its own: head-only checkpoints fit, with or without ``DINOv2Backbone``'s
    ``save_frozen_weights``); any weight present must have the model's shape.

    Args:
        model: the built model.
        checkpoint: what :func:`check_checkpoint_or_exit` returned for ``path``.
        path: the checkpoint file, for the message.
        config: the config file, for the message.
        option: where the checkpoint came from, e.g. ``'CHECKPOINT'`` or ``'--resume'``.
    """
    from mmseg_saot.models.backbones.dinov2 import frozen_weights_mismatch
    fit = _CheckpointFit(model, checkpoint)
    if fit.other_backbone and not fit.mismatched:  # shapes first: another architecture
        exit_with(f'{option}: ' + frozen_weights_mismatch(
            f'"{path}"', weights_from=f'{config} (with its --cfg-options)'))
    if not fit.missing and not fit.mismatched:
        return
    exit_with(f'{option}: "{path}" does not fit the model of {config}: '
              f'{fit.describe()}. Use a checkpoint that tools/train.py wrote with this '
              'config and these --cfg-options (to resume: their --work-dir; after changing '
              'the model, start a new --work-dir).')


def saved_config(checkpoint: Any) -> Optional[Any]:
    """The training run's config MMEngine saved in ``checkpoint['meta']['cfg']``, as a
    ``Config``; None without one, or when it does not parse here (a config of other
    plugins): checks that read it then judge nothing."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    from mmengine.config import Config
    try:
        return Config.fromstring(text, '.py')
    except Exception:  # any parse failure of a foreign config: not judged
        return None


def untrained_teacher_problem(model, checkpoint: Any, path: str, config: str) -> Optional[str]:
    """Why ``model`` would evaluate an untrained head of ``checkpoint``, or None.

    A run without ``EMATeacherHook`` (source-only) saves a teacher head of the right
    shapes that never moved from its initialisation; a config that predicts with the
    teacher (``model.predict_on='teacher'``) would score it, without any error. The run's
    own config, which MMEngine saves in the checkpoint's meta, tells; a checkpoint
    without a readable one is not judged.

    Args:
        model: the built model (wrappers such as the TTA model are looked through).
        checkpoint: the loaded checkpoint.
        path: the checkpoint file, for the message.
        config: the config file, for the message.
    """
    model = _unwrapped(model)
    if getattr(model, 'predict_on', None) != 'teacher':
        return None
    saved = saved_config(checkpoint)
    if saved is None:
        return None
    if any(has_type(hook, 'EMATeacherHook') for hook in saved.get('custom_hooks') or []):
        return None
    return (f'"{path}" was saved by a run without EMATeacherHook (its saved config has '
            'none in custom_hooks), so its teacher head was never trained, and '
            f'{config} predicts with the teacher (model.predict_on=\'teacher\'). Test the '
            'head that run trained with --cfg-options model.predict_on=student, or use a '
            f'checkpoint of a run of {config}.')


def other_classes_problem(checkpoint: Any, classes: Optional[Sequence[str]],
                         path: str, where: str) -> Optional[str]:
    """Why ``checkpoint`` would score the wrong classes on a set of ``classes``, or None.

    A head of C outputs fits any C-class config, but its output k is the class k of the
    set it was trained on (``meta['dataset_meta']['classes']``, which MMEngine saves):
    another order or other names would pair each IoU with another class. A checkpoint
    or a set that names no classes is not judged.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    saved = ((meta or {}).get('dataset_meta') or {}).get('classes') if isinstance(
        meta, dict) else None
    if not saved or not classes or list(saved) == list(classes):
        return None
    pairs = list(zip(saved, classes))
    k = next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))
    detail = (f'its class {k} is "{saved[k]}" and {where}\'s is "{classes[k]}"'
              if k < len(pairs) else f'it has {len(saved)} classes and {where} {len(classes)}')
    return (f'"{path}" was trained on other classes than {where} names: {detail}, so each '
            'IoU would be scored against another class. Test on a set with the '
            "checkpoint's classes in its order (metainfo=dict(classes=...)).")


def load_from_warning(model, checkpoint: Any, path: str) -> Optional[str]:
    """What ``load_from`` (fine-tuning: MMEngine loads it non-strictly) will leave
    untouched, or None when it sets every trained weight of ``model``.

    A head for other classes (the usual reason to fine-tune) keeps its initial
    weights; a checkpoint trained on another backbone's features fits by shape but
    not by meaning. Both are allowed, and said once, in one sentence, before training.
    """
    fit = _CheckpointFit(model, checkpoint)
    problems = [fit.describe()] if fit.missing or fit.mismatched else []
    if fit.other_backbone:
        problems.append('its head was trained on the features of other frozen backbone '
                        'weights than this model\'s')
    if not problems:
        return None
    return (f'load_from: "{path}" does not fit this model exactly: {"; ".join(problems)}. '
            'Those weights start from their initial values; if you meant to continue this '
            'model\'s training, use its own checkpoint (or --resume).')


class _CheckpointFit:
    """How a checkpoint's weights match a built model (wrappers looked through).

    Attributes:
        missing: the model's trained weights the checkpoint lacks (frozen ones may be
            absent: the model keeps its own).
        mismatched: ``'name (shape in the checkpoint, shape in the model)'`` entries.
        other_backbone: the checkpoint records other frozen backbone weights.
        total: the number of entries in the model's state dict.
    """

    def __init__(self, model, checkpoint: Any) -> None:
        from mmseg_saot.models.backbones.dinov2 import VIT_DIGEST_KEY
        model = _unwrapped(model)
        saved = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
        saved = {key[len('module.'):] if key.startswith('module.') else key: value
                 for key, value in saved.items()}
        expected = model.state_dict()
        frozen = _optional_frozen_weights(model)
        # one that brings frozen weights must bring them all: a partial ViT (another
        # architecture's) would be completed with this model's own
        frozen_missing = sorted(frozen - set(saved)) if frozen & set(saved) else []
        # a digest the checkpoint records, against the frozen ViT of the module it names
        # (whether or not this model's own state dict holds one)
        self.other_backbone = any(
            _other_vit_weights(model, key, value) for key, value in saved.items()
            if key.endswith(VIT_DIGEST_KEY))
        frozen.update(key for key in expected if key.endswith(VIT_DIGEST_KEY))
        self.missing = [key for key in expected
                        if key not in saved and key not in frozen] + frozen_missing
        self.mismatched = [
            f'{key} ({tuple(saved[key].shape)} in the checkpoint, {tuple(value.shape)} in '
            'the model)' for key, value in expected.items()
            if key in saved and getattr(saved[key], 'shape', None) != value.shape]
        self.total = len(expected)

    def describe(self) -> str:
        """``"2 of the model's 40 weights are missing (...); 1 weights have another shape
        (...)"``."""
        problems = []
        if self.missing:
            problems.append(f'{len(self.missing)} of the model\'s {self.total} weights are '
                            f'missing ({_first(self.missing)})')
        if self.mismatched:
            problems.append(f'{len(self.mismatched)} weights have another shape '
                            f'({_first(self.mismatched)})')
        return '; '.join(problems)


def _other_vit_weights(model, key: str, saved_digest: Any) -> bool:
    """Whether ``saved_digest`` (under ``key``, ``<module>.frozen_vit_sha256``) names
    other frozen ViT weights than that module of ``model`` holds."""
    import torch
    path = key.rpartition('.')[0]
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return False
    if not (isinstance(saved_digest, torch.Tensor) and hasattr(module, 'vit_digest')):
        return False
    return not torch.equal(saved_digest.cpu(), module.vit_digest())


def _optional_frozen_weights(model) -> set:
    """Names of the frozen weights a checkpoint may lack (the model keeps its own): the
    backbone's, when the model has one. Other frozen weights are trained all the same,
    outside the optimizer (the EMA teacher's ``teacher_head``/``teacher_neck``), so a
    checkpoint must bring them; a model without a backbone: every frozen parameter."""
    import torch
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, torch.nn.Module):
        return {name for name, param in backbone.named_parameters(prefix='backbone')
                if not param.requires_grad}
    return {name for name, param in model.named_parameters() if not param.requires_grad}


def _unwrapped(model):
    """The model inside wrappers that hold it as ``.module`` (DDP, the TTA model)."""
    import torch
    while isinstance(getattr(model, 'module', None), torch.nn.Module):
        model = model.module
    return model


def _first(items, count: int = 3) -> str:
    shown = ', '.join(items[:count])
    return shown + (f', ... ({len(items) - count} more)' if len(items) > count else '')
