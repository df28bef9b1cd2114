"""What identifies a pseudo-label cache: the settings and weights that produced it."""
import hashlib
from typing import Any, Dict, Optional, Sequence

import torch

from mmseg_saot.utils.digests import named_tensors_sha256


def weights_checksum(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer of ``module`` (names, shapes, bytes)."""
    tensors = dict(module.named_parameters())
    tensors.update(dict(module.named_buffers()))
    return named_tensors_sha256(tensors.items()).hex()


def keys_checksum(keys: Sequence[str]) -> str:
    """sha256 of the ordered list of target image names."""
    return hashlib.sha256('\n'.join(keys).encode()).hexdigest()


def make_fingerprint(*, backbone: torch.nn.Module, labeler_cfg: dict, source_cfg: Any,
                     target_pipeline: Any, keys: Sequence[str], feature_index: int,
                     num_source_images: Optional[int],
                     target_mean_images: int) -> Dict[str, Any]:
    """The fingerprint stored in the manifest; any change starts a new cache.

    It names the backbone (timm model name and a checksum of its weights), the labeller
    config, the source dataset config, the target labelling pipeline, the target image
    list and the bank settings.
    """
    return dict(
        backbone=getattr(backbone, 'model_name', type(backbone).__name__),
        weights_checksum=weights_checksum(backbone),
        labeler=_plain(labeler_cfg), source=_plain(source_cfg),
        target_pipeline=_plain(target_pipeline), num_target_images=len(keys),
        target_images_checksum=keys_checksum(keys), feature_index=feature_index,
        num_source_images=num_source_images, target_mean_images=target_mean_images)


def _plain(value: Any) -> Any:
    """Config objects as plain JSON-able data."""
    if hasattr(value, 'to_dict'):
        value = value.to_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
