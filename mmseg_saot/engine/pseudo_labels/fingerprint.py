"""What identifies a pseudo-label cache: the settings and weights that produced it."""
import hashlib
import inspect
import os
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.utils.data import Dataset

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


def file_stamp(path: Optional[str]) -> str:
    """A file's size and modification time (ns), ``'missing'``, or ``'-'`` for None (no
    file).

    An edited, replaced or converted-again file changes it. The content is not read
    (that would mean reading the whole dataset at every start): a copy that does not
    keep modification times (``cp -r``; ``cp -a`` and ``rsync -a`` keep them) changes it
    too.
    """
    if path is None:
        return '-'
    try:
        stat = os.stat(path)
    except OSError:
        return 'missing'
    return f'{stat.st_size} {stat.st_mtime_ns}'


def files_checksum(paths: Sequence[Optional[str]]) -> str:
    """sha256 of the :func:`file_stamp` of each file, in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f'{file_stamp(path)}\n'.encode())
    return digest.hexdigest()


def image_stamps(keys: Sequence[str], paths: Sequence[Optional[str]]) -> Dict[str, str]:
    """``{key: file_stamp}`` of each target image (``paths[i]`` is ``keys[i]``'s; a key
    listed twice is one image): the cache labels again only the images whose stamp
    changed (:meth:`~mmseg_saot.datasets.pseudo_label_cache.PseudoLabelCache.open`)."""
    stamps: Dict[str, str] = {}
    for key, path in zip(keys, paths):
        if key not in stamps:
            stamps[key] = file_stamp(path)
    return stamps


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
                     target_mean_files: Sequence[Optional[str]],
                     source_files: Sequence[Optional[str]],
                     source_set_size: Optional[int] = None) -> Dict[str, Any]:
    """The fingerprint stored in the manifest; any change starts a new cache.

    It names the backbone (timm model name, a checksum of its weights and its device
    type: labels made on a GPU differ from those made on the CPU), what else
    decides the features (the backbone's output blocks, norm and dtype, the data
    preprocessor's mean, std, channel order and padding: :func:`feature_settings`), the
    labeller config and label space, the source dataset config (less its ``data_root``),
    the target labelling pipeline, the target image list, the bank settings, and the
    size and modification time (:func:`files_checksum`) of what the fitted labeller
    depends on: the source bank's images and label maps, and the target images that fix
    its target mean (``target_mean_files``). Labels made from edited sources are never
    reused. Every other target image is stamped on its own (:func:`image_stamps`): an
    edited one is labelled again, alone.

    Args:
        model: the segmentor whose ``backbone`` and ``data_preprocessor`` give the
            features.
        source_set_size: the number of source images, if known: a
            ``num_source_images`` of at least it is recorded as None (all of them).
    """
    backbone = model.backbone
    return dict(
        backbone=getattr(backbone, 'model_name', type(backbone).__name__),
        weights_checksum=weights_checksum(backbone),
        # the labeller solves densely up to another size on a GPU, in fp16 products
        device=_device_type(backbone),
        feature_settings=feature_settings(model),
        labeler=labeler_settings(labeler_cfg), num_classes=num_classes,
        ignore_index=ignore_index,
        source=_plain(_without_roots(source_cfg)),
        target_pipeline=_plain(target_pipeline), num_target_images=len(keys),
        target_images_checksum=keys_checksum(keys), feature_index=feature_index,
        # a count of at least the dataset's size takes every image, as None does
        num_source_images=_count_or_all(num_source_images, source_set_size),
        target_mean_images=_count_or_all(target_mean_images, len(keys)),
        target_mean_files_checksum=files_checksum(target_mean_files),
        source_files_checksum=files_checksum(source_files))


def labeler_settings(labeler_cfg: Any) -> Dict[str, Any]:
    """The labeller config as plain data, less what does not change the labeller: its
    ``type`` when that is :class:`SAOTLabeler` (the default; configs often drop it) and
    options given at their default value. Spellings of the same labeller keep the
    cache; a type the registry does not know is kept as written."""
    from mmseg.registry import MODELS

    from mmseg_saot.models.labelers import SAOTLabeler
    cfg = dict(labeler_cfg.to_dict() if hasattr(labeler_cfg, 'to_dict') else labeler_cfg)
    kind = cfg.pop('type', SAOTLabeler)
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    settings = _plain(cfg)
    if not isinstance(cls, type):
        return dict(settings, type=_plain(kind))
    defaults = {name: _plain(param.default)
                for name, param in inspect.signature(cls.__init__).parameters.items()
                if param.default is not inspect.Parameter.empty}
    settings = {key: value for key, value in settings.items()
                if key not in defaults or defaults[key] != value}
    if cls is not SAOTLabeler:
        settings['type'] = f'{cls.__module__}.{cls.__qualname__}'
    return settings


def _device_type(module: torch.nn.Module) -> str:
    """``'cpu'``, ``'cuda'``, ...: where ``module``'s first parameter or buffer lives."""
    for tensor in module.parameters():
        return tensor.device.type
    for tensor in module.buffers():
        return tensor.device.type
    return 'cpu'


def _count_or_all(count: Optional[int], total: Optional[int]) -> Optional[int]:
    """``count`` of ``total`` images, or None for all of them (as ``evenly_spaced``);
    ``count`` itself when ``total`` is unknown."""
    return None if count is None or (total is not None and count >= total) else count


def _without_roots(cfg: Any) -> Any:
    """``cfg`` without its ``data_root`` paths: the bank's files are in the fingerprint by
    their size and modification time, so the same files at another path (a dataset
    staged to a node's local disk, copied with ``cp -a``) keep the cache."""
    if hasattr(cfg, 'to_dict'):
        cfg = cfg.to_dict()
    if isinstance(cfg, dict):
        return {key: _without_roots(value) for key, value in cfg.items()
                if key != 'data_root'}
    if isinstance(cfg, (list, tuple)):
        return [_without_roots(value) for value in cfg]
    return cfg


def dataset_pipelines(dataset) -> Any:
    """The pipeline of ``dataset`` as plain data, for the fingerprint. Through wrappers
    (``ConcatDataset``, ``RepeatDataset``, ...), which have none or only their own, the
    list of every pipeline under it, wrappers' included. A plain dataset gives its
    pipeline alone, as it always has (so existing caches keep their fingerprint)."""
    if not _inner_datasets(dataset):
        return _pipeline_plain(getattr(dataset, 'pipeline', None))
    found, stack = [], [dataset]
    while stack:
        node = stack.pop(0)
        if getattr(node, 'pipeline', None) is not None:
            found.append(_pipeline_plain(node.pipeline))
        stack[:0] = _inner_datasets(node)
    return found


def _inner_datasets(dataset) -> List[Any]:
    """The datasets a wrapper holds (``datasets`` or ``dataset``), or none."""
    inner = getattr(dataset, 'datasets', None)
    if inner:
        return list(inner)
    one = getattr(dataset, 'dataset', None)
    return [one] if isinstance(one, Dataset) else []


def _pipeline_plain(pipeline: Any) -> Any:
    """A pipeline as plain data: its repr where every transform has a repr of its own
    (as before), else the list of its transforms, each described by :func:`_plain`."""
    transforms = getattr(pipeline, 'transforms', None)
    if transforms is None or all(_has_own_repr(t) for t in transforms):
        return _plain(pipeline)
    return [_plain(t) for t in transforms]


def _has_own_repr(value: Any) -> bool:
    return type(value).__repr__ is not object.__repr__


def _plain(value: Any, depth: int = 0) -> Any:
    """Config objects as plain JSON-able data; an object without a repr of its own
    (whose default repr holds its memory address, new in every process) as its type
    and attributes."""
    if hasattr(value, 'to_dict'):
        value = value.to_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v, depth) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if _has_own_repr(value) or depth >= 3 or not hasattr(value, '__dict__'):
        return repr(value) if _has_own_repr(value) else type(value).__qualname__
    return {'type': type(value).__qualname__,
            **{k: _plain(v, depth + 1) for k, v in sorted(vars(value).items())}}
