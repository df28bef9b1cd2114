"""What identifies a pseudo-label cache: the settings and weights that produced it."""
import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence

import torch

from mmseg_saot.utils.digests import named_tensors_sha256

from .feature_store import feature_settings


def weights_checksum(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer of ``module`` (names, shapes, bytes)."""
    tensors = dict(module.named_parameters())
    tensors.update(dict(module.named_buffers()))
    return named_tensors_sha256(tensors.items()).hex()


def keys_checksum(keys: Sequence[str]) -> str:
    """sha256 of the ordered list of target image names."""
    return hashlib.sha256('\n'.join(keys).encode()).hexdigest()


def files_checksum(paths: Sequence[Optional[str]]) -> str:
    """sha256 of the size and modification time (ns) of each file, in order.

    An edited, replaced or converted-again file changes it. The content is not read
    (that would mean reading the whole dataset at every start): a copy that does not
    keep modification times (``cp -r``; ``cp -a`` and ``rsync -a`` keep them) changes it
    too. A missing file counts as such, None (no file) as none.
    """
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            line = '-'
        else:
            try:
                stat = os.stat(path)
                line = f'{stat.st_size} {stat.st_mtime_ns}'
            except OSError:
                line = 'missing'
        digest.update(f'{line}\n'.encode())
    return digest.hexdigest()


def dataset_files(dataset, indices: Optional[Sequence[int]] = None,
                  labels: bool = False) -> List[Optional[str]]:
    """The image paths of ``dataset``'s items ``indices`` (default all), each followed by
    its label map's path (None if it has none) when ``labels``."""
    paths: List[Optional[str]] = []
    for index in range(len(dataset)) if indices is None else indices:
        info = dataset.get_data_info(index)
        paths.append(info.get('img_path'))
        if labels:
            paths.append(info.get('seg_map_path'))
    return paths


def make_fingerprint(*, model: torch.nn.Module, labeler_cfg: dict, num_classes: int,
                     ignore_index: int, source_cfg: Any, target_pipeline: Any,
                     keys: Sequence[str], feature_index: int,
                     num_source_images: Optional[int], target_mean_images: int,
                     target_files: Sequence[Optional[str]],
                     source_files: Sequence[Optional[str]]) -> Dict[str, Any]:
    """The fingerprint stored in the manifest; any change starts a new cache.

    It names the backbone (timm model name and a checksum of its weights), what else
    decides the features (the backbone's output blocks, norm and dtype, the data
    preprocessor's mean, std, channel order and padding: :func:`feature_settings`), the
    labeller config and label space, the source dataset config, the target labelling
    pipeline, the target image list, the bank settings, and the size and modification
    time of the target images and of the source bank's images and label maps
    (:func:`files_checksum`): labels of an image edited since, or made from edited
    sources, are never reused.

    Args:
        model: the segmentor whose ``backbone`` and ``data_preprocessor`` give the
            features.
    """
    backbone = model.backbone
    return dict(
        backbone=getattr(backbone, 'model_name', type(backbone).__name__),
        weights_checksum=weights_checksum(backbone),
        feature_settings=feature_settings(model),
        labeler=_plain(labeler_cfg), num_classes=num_classes, ignore_index=ignore_index,
        source=_plain(source_cfg),
        target_pipeline=_plain(target_pipeline), num_target_images=len(keys),
        target_images_checksum=keys_checksum(keys), feature_index=feature_index,
        num_source_images=num_source_images, target_mean_images=target_mean_images,
        target_files_checksum=files_checksum(target_files),
        source_files_checksum=files_checksum(source_files))


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
