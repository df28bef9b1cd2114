"""Hashes of tensors: cache keys and the fingerprints of frozen weights."""
import hashlib
from typing import Iterable, Tuple

import torch


def update_digest(digest, tensor: torch.Tensor) -> None:
    """Feed a tensor's shape, dtype and values (its bytes, on the CPU) to a hashlib digest."""
    data = tensor.detach().contiguous().cpu()
    digest.update(f'{tuple(data.shape)}{data.dtype}'.encode())
    digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))


def named_tensors_sha256(named: Iterable[Tuple[str, torch.Tensor]]) -> bytes:
    """sha256 of named tensors in name order: each name, shape, dtype and the values.

    The pseudo-label manifest's ``weights_checksum`` and the frozen-ViT digest of
    checkpoints (``DINOv2Backbone.vit_digest``) are this hash.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda item: item[0]):
        data = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{tuple(data.shape)}:{data.dtype}'.encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()
