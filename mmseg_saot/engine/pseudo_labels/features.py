"""Frozen patch features of dataset images, through a segmentor's own preprocessor and backbone."""
import dataclasses
import math
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.dataset import pseudo_collate
from mmengine.utils import ProgressBar

from mmseg_saot.datasets.integrity import wide_label_problem
from mmseg_saot.models.labelers.patch_labels import patch_labels
from mmseg_saot.utils.errors import UserInputError
from .feature_store import FeatureStore


class PseudoLabelInputError(UserInputError, ValueError):
    """An image or label file of the pseudo-labelling stage cannot be used."""


class FeatureMemo(dict):
    """A feature memo for :func:`iter_features` that stops growing at ``max_bytes``.

    Images beyond the budget are simply recomputed by the next pass (the same
    values: nothing is rounded for storage), so a large target set (ViT-L/14 on
    Cityscapes' 2975 images would need ~33 GB) never exhausts memory. With a
    ``store`` the features also go to disk and later runs read them back
    (see :class:`~.feature_store.FeatureStore`).

    Args:
        max_bytes: memory budget.
        store: optional disk store shared across runs.
    """

    def __init__(self, max_bytes: int = 4 << 30, store: Optional[FeatureStore] = None) -> None:
        super().__init__()
        self.max_bytes, self.num_bytes = max_bytes, 0
        self.store = store

    def __setitem__(self, key, record: 'ImageFeatures') -> None:
        size = record.feats.numel() * record.feats.element_size()
        if record.labels is not None:
            size += record.labels.numel() * record.labels.element_size()
        if self.num_bytes + size > self.max_bytes:
            return
        self.num_bytes += size
        super().__setitem__(key, record)


@dataclass
class ImageFeatures:
    """Frozen features of one image.

    Attributes:
        index: the image's index in its dataset.
        img_path: its file.
        feats: ``(D, h, w)`` patch features of the resized image, ``h = ceil(H' / p)``.
        img_shape: ``(H', W')`` after the pipeline's resize.
        ori_shape: ``(H, W)`` of the file.
        labels: ``(h, w)`` long patch labels (majority per patch) when the dataset has
            label maps and labels were asked for, else None.
    """

    index: int
    img_path: str
    feats: torch.Tensor
    img_shape: Tuple[int, int]
    ori_shape: Tuple[int, int]
    labels: Optional[torch.Tensor] = None


def load_item(dataset, index: int) -> dict:
    """``dataset[index]`` with unreadable files reported by name.

    Raises:
        PseudoLabelInputError: the image (or label) file is missing or corrupt, or the
            dataset's pipeline does not pack its output (no ``PackSegInputs``).
    """
    try:
        item = dataset[index]
    except Exception as err:  # decoding errors come from cv2/PIL/mmcv
        info = dataset.get_data_info(index)
        paths = [str(info[k]) for k in ('img_path', 'seg_map_path') if info.get(k)]
        missing = [path for path in paths if not osp.exists(path)]
        fix = (f'{", ".join(missing)} does not exist: add it, or remove its name from the '
               'split file (ann_file) that lists it' if missing else
               'Replace or delete the corrupt file, or remove it from the dataset (e.g. '
               'with an ann_file list)')
        raise PseudoLabelInputError(
            f'pseudo-labelling could not load sample {index} ({", ".join(paths)}): '
            f'{type(err).__name__}: {err}. {fix}.') from err
    if not (isinstance(item, dict) and 'inputs' in item and 'data_samples' in item):
        got = (f'a dict of {", ".join(sorted(map(str, item)))}' if isinstance(item, dict)
               else type(item).__name__)
        raise PseudoLabelInputError(
            f'{dataset.get_data_info(index).get("img_path")}: the pipeline of its dataset '
            f'gave {got}, not a packed sample: end that pipeline with '
            "dict(type='PackSegInputs') (the target's is "
            'train_dataloader.dataset.target.dataset.pipeline in configs/saot/, the '
            "source's the SAOTPseudoLabelHook's source.pipeline).")
    return item


@torch.no_grad()
def iter_features(model: torch.nn.Module, dataset, indices: Sequence[int], *,
                  batch_size: int = 8, feature_index: int = -1, with_labels: bool = False,
                  num_classes: int = 19, ignore_index: int = 255,
                  progress: Optional[str] = None,
                  device: Optional[torch.device] = None,
                  memo: Optional[Dict] = None) -> Iterator[ImageFeatures]:
    """Yield :class:`ImageFeatures` of ``dataset[i]`` for ``i`` in ``indices``, in order.

    Images run through ``model.data_preprocessor`` (normalisation, padding) and
    ``model.backbone``; output ``feature_index`` of the backbone is kept and cropped to
    each image's own patch grid, so batches may mix sizes.

    Args:
        model: a segmentor with ``data_preprocessor`` and ``backbone`` (frozen).
        dataset: an MMSeg dataset whose pipeline ends in ``PackSegInputs``.
        indices: which images.
        batch_size: images per backbone call.
        feature_index: which backbone output.
        with_labels: also return patch labels from the packed ``gt_sem_seg``.
        num_classes, ignore_index: of the label maps.
        progress: a title: show a progress bar with ETA.
        device: where features are returned (default: the model's device).
        memo: a dict shared by calls that read the same images with the same model
            (e.g. the labelling pass and the method comparison of one tool run):
            features are computed once per image file and feature index. A
            :class:`FeatureMemo` with a ``store`` also looks images up on disk (after
            loading them: the key hashes the pipeline's output) and saves new ones.
    """
    indices = list(indices)
    if progress and indices:
        print(f'{progress}: {len(indices)} images', flush=True)
    bar = ProgressBar(len(indices)) if progress and indices else None
    patch = int(getattr(model.backbone, 'patch_size', 14))
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        keys = {i: (dataset.get_data_info(i)['img_path'], feature_index, with_labels)
                for i in chunk}
        todo = [i for i in chunk if memo is None or keys[i] not in memo]
        items = [load_item(dataset, i) for i in todo]
        store = getattr(memo, 'store', None)
        label_settings = (num_classes, ignore_index, patch) if with_labels else None
        out = device if device is not None else _model_device(model)
        fresh, store_keys = _read_store(store, todo, items, feature_index, label_settings, out)
        compute = [(i, item) for i, item in zip(todo, items) if i not in fresh]
        for i, item, sample, feat in _forward_by_size(model, [i for i, _ in compute],
                                                      [item for _, item in compute],
                                                      feature_index):
            height, width = sample.img_shape[:2]
            if not with_labels:  # target images: labels go back to the file's pixels
                check_file_geometry(sample)
            grid = (math.ceil(height / patch), math.ceil(width / patch))
            feat = feat[:, :grid[0], :grid[1]].float()
            labels = None
            if with_labels:
                labels = _patch_labels_of(sample, item, grid, patch, num_classes, ignore_index)
            if store is not None:
                store.save(store_keys[i], feats=feat, labels=labels, img_shape=(height, width),
                           ori_shape=sample.ori_shape[:2])
            fresh[i] = ImageFeatures(index=i, img_path=sample.img_path, feats=feat.to(out),
                                     img_shape=(height, width),
                                     ori_shape=tuple(sample.ori_shape[:2]),
                                     labels=None if labels is None else labels.to(out))
        if memo is not None:
            for i in todo:
                memo[keys[i]] = fresh[i]
        for i in chunk:
            record = fresh[i] if i in fresh else memo[keys[i]]
            yield dataclasses.replace(record, index=i)
        if bar is not None:
            for _ in chunk:
                bar.update()
    if bar is not None:
        print(flush=True)


def _model_device(model) -> torch.device:
    return next(model.backbone.parameters(), torch.empty(0)).device


def _read_store(store: Optional[FeatureStore], indices: List[int], items: List[dict],
                feature_index: int, label_settings, device):
    """``({index: record}, {index: store key})``: the images found in ``store``, and the
    keys of all (the others are saved under them once computed); empty without a store."""
    found, keys = {}, {}
    if store is None:
        return found, keys
    for index, item in zip(indices, items):
        keys[index] = store.key(item, feature_index=feature_index,
                                label_settings=label_settings)
        entry = store.load(keys[index])
        if entry is not None:
            if label_settings is None:  # target images: labels go back to the file's pixels
                check_file_geometry(item['data_samples'])
            elif 'gt_sem_seg' in item['data_samples']:  # an entry written before the check
                check_label_map(item['data_samples'])
            found[index] = _record_of(index, item, entry, device)
    return found, keys


def _record_of(index: int, item: dict, entry: dict, device) -> ImageFeatures:
    """The :class:`ImageFeatures` of a stored entry, for ``dataset[index]`` = ``item``.

    The sizes come from ``item``, not the entry: the key hashes the pipeline's output,
    which two files share when one is the other at another resolution.
    """
    labels = entry['labels']
    sample = item['data_samples']
    return ImageFeatures(index=index, img_path=sample.img_path,
                         feats=entry['feats'].to(device),
                         img_shape=tuple(sample.img_shape[:2]),
                         ori_shape=tuple(sample.ori_shape[:2]),
                         labels=None if labels is None else labels.to(device))


def check_file_geometry(sample) -> None:
    """Raise a PseudoLabelInputError if the pipeline did more to a target image than
    resize it: pseudo-labels are mapped back to the file's pixels by undoing a resize
    only, so a flip or a crop would write labels flipped, or stretched over the image.
    """
    meta = sample.metainfo
    ori_h, ori_w = meta['ori_shape'][:2]
    img_h, img_w = meta['img_shape'][:2]
    scale_w, scale_h = meta.get('scale_factor') or (1.0, 1.0)
    what = []
    if meta.get('flip'):
        what.append(f'flips it ({meta.get("flip_direction")})')
    if abs(img_h - ori_h * scale_h) > 1 or abs(img_w - ori_w * scale_w) > 1:
        what.append(f'gives {img_h}x{img_w}, not the file\'s {ori_h}x{ori_w} scaled by '
                    f'{scale_h:.3g}x{scale_w:.3g} (a crop?)')
    if what:
        raise PseudoLabelInputError(
            f'{sample.img_path}: the target labelling pipeline {" and ".join(what)}. '
            'Pseudo-labels are written at the file\'s size by undoing a resize only: '
            'let that pipeline load and resize (no RandomFlip, RandomCrop, ...); it is '
            'the pipeline of the dataset PseudoLabelDataset wraps '
            '(train_dataloader.dataset.target.dataset.pipeline in configs/saot/).')


def _forward_by_size(model, chunk, items, feature_index):
    """Backbone outputs of ``items`` in order, one preprocessor call per image size
    (MMSeg's test-mode preprocessor stacks equal sizes only)."""
    groups = {}
    for position, item in enumerate(items):
        groups.setdefault(tuple(item['inputs'].shape), []).append(position)
    outputs = [None] * len(items)
    for positions in groups.values():
        batch = model.data_preprocessor(pseudo_collate([items[p] for p in positions]), False)
        maps = model.backbone(batch['inputs'])[feature_index]
        for p, sample, feat in zip(positions, batch['data_samples'], maps):
            outputs[p] = (chunk[p], items[p], sample, feat)
    return outputs


def _patch_labels_of(sample, item, grid, patch, num_classes, ignore_index) -> torch.Tensor:
    if 'gt_sem_seg' not in sample:
        raise PseudoLabelInputError(
            f'{sample.img_path}: the source pipeline gave no label map; it needs '
            "dict(type='LoadAnnotations') and a seg_map_path in the source dataset.")
    path = sample.metainfo.get('seg_map_path') or sample.img_path
    check_label_map(sample)
    seg = sample.gt_sem_seg.data  # (1, H'', W'') padded with ignore by the preprocessor
    seg = seg[0, :grid[0] * patch, :grid[1] * patch]
    try:
        return patch_labels(seg[None], patch=patch, num_classes=num_classes,
                            ignore_index=ignore_index)[0]
    except ValueError as err:  # a label value out of range: name the file
        raise PseudoLabelInputError(
            f'{path}: {str(err).replace("patch_labels: ", "")} `python tools/check_data.py '
            'CONFIG` lists every such file.') from err


def check_label_map(sample) -> None:
    """Raise a PseudoLabelInputError naming the file if a source sample's label map
    loaded as colour channels (MMSeg packs an RGB map as ``(H, W, 3)``) or is stored in
    more than 8 bits (MMSeg's loader wrapped its values). Run on computed features and
    on feature-store hits alike."""
    path = sample.metainfo.get('seg_map_path') or sample.img_path
    seg = sample.gt_sem_seg.data
    problem = None
    if seg.dim() != 3 or seg.shape[0] != 1:
        problem = (f'the label map loads as {tuple(seg.shape)}, not one channel of class '
                   'ids (a colour rendering of the classes?); MMSeg needs a grayscale or '
                   'palette PNG of class ids.')
    elif sample.metainfo.get('seg_map_path'):
        problem = wide_label_problem(path)
    if problem:
        raise PseudoLabelInputError(f'{path}: {problem} `python tools/check_data.py CONFIG` '
                                    'lists every such file.')


def stack_same_grid(records: List[ImageFeatures], option: str) -> Tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """Stack the features and labels of same-size images: ``(S, D, h, w)``, ``(S, h, w)``.

    Raises:
        PseudoLabelInputError: grids differ (the message names two files and ``option``).
    """
    grids = {tuple(r.feats.shape[-2:]) for r in records}
    if len(grids) > 1:
        first = records[0]
        other = next(r for r in records if r.feats.shape[-2:] != first.feats.shape[-2:])
        raise PseudoLabelInputError(
            f'source images must share one patch grid to form the labelling bank, but '
            f'{first.img_path} gives {tuple(first.feats.shape[-2:])} and {other.img_path} '
            f'{tuple(other.feats.shape[-2:])}: give {option} a Resize with keep_ratio=False '
            '(a fixed scale).')
    return (torch.stack([r.feats for r in records]),
            torch.stack([r.labels for r in records]))
