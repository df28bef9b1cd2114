"""Label a target set with several methods of the SAOT ladder at once and score them.

The backbone runs once per image; every method labels the same features through
:func:`fit_labeler` and :func:`label_image`, the code path of the training hook.
"""
import os
import os.path as osp
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from mmseg_saot.models.labelers import METHODS
from mmseg_saot.utils.paths import move_aside
from .features import PseudoLabelInputError, iter_features
from .labelling import build_labeler, fit_labeler, label_image, usable_sources
from .oracle import PATCH_ORACLE, patch_oracle_labels
from .overlays import save_overlay
from .scoring import PseudoLabelScore
from .target_set import evenly_spaced


# what a comparison writes into its output folder
OUTPUTS = ('pseudo_label_miou.json', 'pseudo_label_miou.txt', 'overlays')


def set_aside_earlier_outputs(out_dir: str) -> Optional[str]:
    """Move the outputs of an earlier comparison in ``out_dir`` (:data:`OUTPUTS`) into
    ``out_dir/earlier-<time of its table>/``, so that the folder holds one run's table
    and overlays (a run with fewer methods would leave the others' overlays beside a
    table without them) and nothing is lost. Returns that folder, or None if there was
    nothing to move."""
    table = next((name for name in OUTPUTS[:2] if osp.exists(osp.join(out_dir, name))),
                 OUTPUTS[0])
    return move_aside(out_dir, OUTPUTS, stamp_from=table)


def compare_methods(model: torch.nn.Module, hook, dataset, methods: Sequence[str], *,
                    out_dir: str, num_overlays: int = 8,
                    main_method: Optional[str] = None,
                    memo: Optional[Dict] = None, oracle: bool = False) -> Dict[str, Dict]:
    """Pseudo-label ``dataset``'s targets with each of ``methods``; score against truth.

    Args:
        model: the segmentor (frozen backbone + preprocessor).
        hook: the config's :class:`SAOTPseudoLabelHook` (source set, labeller config).
        dataset: the :class:`PseudoLabelDataset`; its wrapped dataset must have
            ``seg_map_path`` (ground truth) for scoring.
        methods: names from :data:`METHODS`.
        out_dir: overlays go to ``out_dir/overlays/<method>/``.
        num_overlays: overlay images per method (evenly spaced over the set).
        main_method: also compared image by image with the cache (None: skip).
        memo: feature memo shared with the labelling pass (see :func:`iter_features`).
        oracle: also score :data:`~.oracle.PATCH_ORACLE`, the ground truth's own patch
            labels upsampled like the methods' (their ceiling at this resolution).

    Returns:
        ``{method: PseudoLabelScore.summary(...)}`` plus, for ``main_method``,
        ``cache_mismatches`` (pixels that differ from the cached labels).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise PseudoLabelInputError(f'--methods: unknown {unknown}; choose from {list(METHODS)}.')
    target = dataset.target
    missing = missing_ground_truth(dataset)
    if missing:
        raise PseudoLabelInputError(f'{missing}: nothing to score the methods against.')
    gt_paths = [dataset.get_data_info(i)['gt_seg_map_path'] for i in range(len(dataset))]
    gt_codes = [_label_encoding(target.get_data_info(i)) for i in range(len(dataset))]
    classes = list(dataset.metainfo['classes'])
    palette = dataset.metainfo.get('palette') or [[c * 13 % 256] * 3 for c in range(len(classes))]
    ignore = hook.ignore_index
    labelers, scores = _fit_all(model, hook, methods, target, memo)
    if oracle:
        scores[PATCH_ORACLE] = PseudoLabelScore(hook.num_classes, hook.ignore_index)
    patch = int(getattr(model.backbone, 'patch_size', 14))
    shown = set(evenly_spaced(len(dataset), num_overlays))
    mismatches = 0
    for record in iter_features(model, target, range(len(dataset)), batch_size=hook.batch_size,
                                feature_index=hook.feature_index, memo=memo,
                                progress=f'labelling with {len(methods)} methods'
                                         + (' and the patch oracle' if oracle else '')):
        gt = _read_gt(gt_paths[record.index], *gt_codes[record.index])
        if oracle:
            _score_oracle(scores[PATCH_ORACLE], gt, record, patch, hook, gt_paths[record.index])
        for method, labeler in labelers.items():
            start = time.perf_counter()
            out = label_image(labeler, record, patch)
            scores[method].seconds += time.perf_counter() - start
            try:
                scores[method].add(out.labels, out.raw_labels, gt)
            except ValueError as err:
                raise PseudoLabelInputError(f'{gt_paths[record.index]}: {err}') from err
            if record.index in shown:
                folder = osp.join(out_dir, 'overlays', method)
                os.makedirs(folder, exist_ok=True)
                save_overlay(osp.join(folder, dataset.key(record.index).replace('/', '__') +
                                      '.png'), record.img_path, out.labels, out.confidence,
                             gt, palette, ignore)
            if method == main_method and dataset.cache.has(dataset.key(record.index)):
                cached = dataset.cache.read_labels(dataset.key(record.index))
                mismatches += int((cached != out.labels).sum())
    if scores and not any(score.labelled_pixels for score in scores.values()):
        raise PseudoLabelInputError(
            f'the ground truth of the {len(dataset)} scored target images has no labelled '
            f'pixel (all ignore_index={ignore}): nothing to score the methods against. Check '
            'the label maps (seg_map_suffix, train ids: python tools/check_data.py CONFIG), '
            'or run without --split val / --no-cache to only write the pseudo-labels.')
    results = {m: scores[m].summary(classes) for m in scores}
    if main_method in results:
        results[main_method]['cache_mismatches'] = mismatches
    return results


def missing_ground_truth(dataset) -> Optional[str]:
    """Why the targets of a :class:`PseudoLabelDataset` cannot be scored, or None when
    every target image has a label map to score against.

    No ``seg_map_path`` in the wrapped dataset's ``data_prefix`` and a label folder that
    does not exist (unlabelled target images, the usual case in UDA) both read as "no
    ground truth".

    Raises:
        PseudoLabelInputError: only some target images have a label map (naming how many
            and the first that lacks one): a score over part of the set would mislead.
    """
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    absent = [info for info in infos if info['gt_seg_map_path'] is None
              or not osp.isfile(info['gt_seg_map_path'])]
    if not absent:
        return None
    if len(absent) < len(infos):
        first = absent[0]
        if first.get('img_path') and not osp.isfile(first['img_path']):
            raise PseudoLabelInputError(
                f'the target image {first["img_path"]} does not exist (nor its label map): '
                'remove it from the split file (ann_file), or add the image.')
        raise PseudoLabelInputError(
            f'{len(absent)} of the {len(infos)} target images have no ground-truth label map '
            f'(the first: {first["gt_seg_map_path"]}); give every image its label map, or '
            'none.')
    folder = (getattr(dataset.target, 'data_prefix', None) or {}).get('seg_map_path')
    if folder and _holds_files(folder):  # labels there, under other names
        suffix = getattr(dataset.target, 'seg_map_suffix', None)
        return (f'the target images have no ground truth: {folder} holds files, but none '
                f'named as the images with seg_map_suffix={suffix!r} (the first expected: '
                f'{absent[0]["gt_seg_map_path"]}); check seg_map_suffix')
    where = f'no label maps under {folder}' if folder else 'no data_prefix.seg_map_path'
    return f'the target images have no ground truth ({where})'


def _holds_files(folder: str) -> bool:
    return any(files for _, _, files in os.walk(folder, followlinks=True))


def _fit_all(model, hook, methods, target, memo):
    """Fit one labeller per method on shared source features (one metric training)."""
    source_set = hook.build_source(target)
    if len(source_set) == 0:
        raise PseudoLabelInputError('the labelled source set of SAOTPseudoLabelHook is empty.')
    sources = usable_sources(list(iter_features(
        model, source_set, evenly_spaced(len(source_set), hook.num_source_images),
        batch_size=hook.batch_size, feature_index=hook.feature_index, with_labels=True,
        num_classes=hook.num_classes, ignore_index=hook.ignore_index, memo=memo,
        progress='source features')), hook.ignore_index)
    sample = list(iter_features(model, target,
                                evenly_spaced(len(target), hook.target_mean_images),
                                batch_size=hook.batch_size, feature_index=hook.feature_index,
                                memo=memo))
    labelers, scores, metric_state, training_seconds = {}, {}, None, 0.0
    for method in methods:
        start = time.perf_counter()
        labeler = build_labeler(hook.labeler_cfg, feat_dim=sources[0].feats.shape[0],
                                num_classes=hook.num_classes, ignore_index=hook.ignore_index,
                                method=method).to(sources[0].feats.device)
        learned = METHODS[method]['metric']
        fit_labeler(labeler, sources, sample, state=metric_state if learned else None)
        if learned and metric_state is None:  # same seed: the same metric for all
            metric_state = labeler.state_dict()
            training_seconds = labeler.training_seconds
        scores[method] = PseudoLabelScore(hook.num_classes, hook.ignore_index)
        # a method that reuses the shared metric is charged its training all the same
        scores[method].seconds = time.perf_counter() - start + (
            training_seconds if learned and not labeler.training_seconds else 0.0)
        labelers[method] = labeler
    return labelers, scores


def _score_oracle(score: PseudoLabelScore, gt: np.ndarray, record, patch: int, hook,
                  gt_path: str) -> None:
    start = time.perf_counter()
    try:
        labels = patch_oracle_labels(gt, record, patch, num_classes=hook.num_classes,
                                     ignore_index=hook.ignore_index)
        score.add(labels, labels, gt)
    except ValueError as err:
        raise PseudoLabelInputError(f'{gt_path}: {err}') from err
    score.seconds += time.perf_counter() - start


def _label_encoding(info: dict) -> Tuple[bool, Optional[dict]]:
    """``(reduce_zero_label, label_map)`` of a target's data info: how its label files
    map to class ids."""
    return bool(info.get('reduce_zero_label', False)), info.get('label_map') or None


def _read_gt(path: str, reduce_zero_label: bool = False,
             label_map: Optional[dict] = None) -> np.ndarray:
    """The class ids of a ground-truth file, decoded as MMSeg's ``LoadAnnotations``
    does for the dataset (``reduce_zero_label``, ``label_map``): as stored, the ids of
    such a dataset are off by one or unmapped, and every class would be scored wrong."""
    from mmseg.datasets.transforms import LoadAnnotations
    try:
        results = LoadAnnotations()(dict(seg_map_path=path, reduce_zero_label=reduce_zero_label,
                                         label_map=label_map, seg_fields=[]))
    except (OSError, ValueError) as err:  # missing, or not an image
        raise PseudoLabelInputError(f'cannot read the ground truth {path}: {err}') from err
    return results['gt_seg_map']
