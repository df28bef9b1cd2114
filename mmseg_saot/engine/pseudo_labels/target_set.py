"""Label a whole target set into a :class:`PseudoLabelCache`: resumable and sharded.

Each rank labels the images ``rank, rank + world_size, ...`` (an image listed twice
counts once) that are not in the cache yet; rank 0 fits the labeller once and saves it, so resumed and sharded runs use
the same metric and prototypes, and every label depends on its image alone (the
labeller's target mean is fixed from a fixed sample). A run killed at any point and
started again completes the cache to exactly what an uninterrupted run writes.
"""
import logging
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import all_reduce, barrier, get_dist_info
from mmengine.logging import print_log

from mmseg_saot.datasets.class_stats import class_pixel_counts, save_class_stats, \
    total_class_counts
from mmseg_saot.datasets.pseudo_label_cache import (STATE_COMPLETE, STATE_NEW,
                                                     PseudoLabelCache, fingerprint_hash)
from mmseg_saot.utils.atomic import atomic_torch_save
from mmseg_saot.utils.errors import load_failure_reason
from .features import PseudoLabelInputError, iter_features
from .labelling import build_labeler, fit_labeler, label_image, usable_sources


def evenly_spaced(total: int, count: Optional[int]) -> List[int]:
    """``count`` indices spread over ``range(total)`` (all of them if count is None)."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, count)})


def first_index_of_each_key(keys: Sequence[str]) -> List[int]:
    """The index of each key's first occurrence in ``keys``, in order."""
    seen = set()
    firsts = []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            firsts.append(index)
    return firsts


def label_target_set(*, model: torch.nn.Module, labeler_cfg: dict, source_set, target_set,
                     keys: Sequence[str], cache: PseudoLabelCache, fingerprint: Dict,
                     num_classes: int, stamps: Optional[Dict[str, str]] = None, ignore_index: int = 255, batch_size: int = 8,
                     feature_index: int = -1, num_source_images: Optional[int] = None,
                     target_mean_images: int = 64, memo: Optional[Dict] = None) -> Dict:
    """Fill ``cache`` with the pseudo-labels of every image of ``target_set``.

    Args:
        model: segmentor with the frozen backbone and its data preprocessor.
        labeler_cfg: config of the :class:`SAOTLabeler` (``feat_dim``/``num_classes``
            are filled in).
        source_set: labelled source dataset (pipeline with ``LoadAnnotations``).
        target_set: target dataset (images only); ``keys[i]`` names image i in the cache.
        cache: where labels go; ``fingerprint`` identifies this run's settings.
        stamps: ``{key: size and modification time}`` of the target images: an image
            changed since it was labelled is labelled again (see
            :meth:`PseudoLabelCache.open`).
        num_classes, ignore_index: label space.
        batch_size: images per backbone call.
        feature_index: which backbone output the labeller reads.
        num_source_images: how many sources form the bank (evenly spaced; None: all).
        target_mean_images: how many targets fix the target mean feature.
        memo: feature memo shared with other passes (see :func:`iter_features`).

    Returns:
        The final manifest.

    Raises:
        PseudoLabelInputError: empty target or source set, unusable source labels,
            unreadable files.
    """
    rank, world_size = get_dist_info()
    if len(keys) == 0:
        raise PseudoLabelInputError(
            f'the target set to pseudo-label is empty ({_describe(target_set)}): check '
            'data_root and data_prefix.img_path of the PseudoLabelDataset.')
    if len(source_set) == 0:
        raise PseudoLabelInputError(f'the labelled source set is empty ({_describe(source_set)}).')
    if rank == 0:
        state = cache.open(fingerprint, stamps)
    barrier()
    state = cache.state(fingerprint_hash(fingerprint))
    _check_every_rank_sees_the_cache(cache, state, rank, world_size)
    # one index per key: an image listed twice (a RepeatDataset) is labelled once
    firsts = first_index_of_each_key(keys)
    missing = {i for i in firsts if not cache.has(keys[i])}  # one look at each image's files
    if state == STATE_COMPLETE and not missing:
        _log(f'pseudo-labels: reusing the complete cache {cache.root} ({len(firsts)} images)')
        manifest = cache.read_manifest()
        _warn_all_ignore(manifest.get('all_ignore') or [])
        return manifest
    # a fixed stride over the images, not over those missing: a rank's share does not
    # depend on what the others see in the cache
    mine = [i for i in firsts[rank::world_size] if i in missing]
    _log(f'pseudo-labels: {len(firsts) - len(missing)} of {len(firsts)} images already in '
        f'{cache.root}; rank {rank} labels {len(mine)}')
    labeler = _prepare_labeler(model, labeler_cfg, source_set, target_set, cache, mine,
                               rank, num_classes, ignore_index, batch_size, feature_index,
                               num_source_images, target_mean_images, memo)
    patch = int(getattr(model.backbone, 'patch_size', 14))
    for record in iter_features(model, target_set, mine, batch_size=batch_size,
                                feature_index=feature_index, memo=memo,
                                progress='pseudo-labelling' if rank == 0 else None):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # all-ignore images are reported below
            out = label_image(labeler, record, patch)
        cache.write(keys[record.index], out.labels, out.confidence)
    barrier()
    if rank == 0:
        _finish(cache, [keys[i] for i in firsts], fingerprint, num_classes, ignore_index)
    barrier()
    return cache.read_manifest()


def _check_every_rank_sees_the_cache(cache: PseudoLabelCache, state: str, rank: int,
                                     world_size: int) -> None:
    """Raise on every rank (so that none waits at a barrier) when some rank does not see
    the manifest rank 0 has just written: ``pseudo_label_dir`` is not one shared folder
    (a local path on several machines), and that rank would label into a cache no other
    rank reads, then miss the fitted labeller."""
    if world_size == 1:
        return
    blind = torch.tensor([0.0 if state != STATE_NEW else float(rank)])
    all_reduce(blind, op='max')
    if blind.item() > 0:
        raise PseudoLabelInputError(
            f'pseudo-labels: rank {int(blind.item())} does not see the cache manifest rank '
            f'0 wrote in {cache.root}: the pseudo-label cache must be one folder every rank '
            'shares. On several machines, point PseudoLabelDataset pseudo_label_dir (or '
            'the work_dir) at a shared file system.')


def _prepare_labeler(model, labeler_cfg, source_set, target_set, cache, mine, rank,
                     num_classes, ignore_index, batch_size, feature_index,
                     num_source_images, target_mean_images, memo):
    """Fit (rank 0, first run) or reload the labeller; None if this rank has no work.

    Called by every rank (it holds a barrier).
    """
    saved = _saved_labeler_state(cache.labeler_path) if rank == 0 else None
    must_fit = rank == 0 and saved is None
    labeler, sources = None, None
    if mine or must_fit:
        indices = evenly_spaced(len(source_set), num_source_images)
        sources = usable_sources(list(iter_features(
            model, source_set, indices, batch_size=batch_size, feature_index=feature_index,
            with_labels=True, num_classes=num_classes, ignore_index=ignore_index, memo=memo,
            progress='source features' if rank == 0 else None)), ignore_index)
        labeler = build_labeler(labeler_cfg, feat_dim=sources[0].feats.shape[0],
                                num_classes=num_classes, ignore_index=ignore_index)
        labeler.to(sources[0].feats.device)
    if must_fit:
        sample = list(iter_features(model, target_set,
                                    evenly_spaced(len(target_set), target_mean_images),
                                    batch_size=batch_size, feature_index=feature_index,
                                    memo=memo))
        fit_labeler(labeler, sources, sample)
        atomic_torch_save(labeler.state_dict(), cache.labeler_path)
    barrier()  # every rank: the fitted labeller is on disk before others read it
    if mine and not must_fit:
        state = saved if saved is not None else torch.load(
            cache.labeler_path, map_location=sources[0].feats.device, weights_only=True)
        _check_saved_labeler(labeler, state, cache)
        fit_labeler(labeler, sources, [], state=state)
    return labeler


def _check_saved_labeler(labeler: torch.nn.Module, state: dict,
                         cache: PseudoLabelCache) -> None:
    """Raise if ``state`` (the cache's fitted labeller) does not load into ``labeler``:
    saved by another version of SAOTLabeler (a strict load failed with a bare
    RuntimeError)."""
    own = labeler.state_dict()
    other = sorted(set(state) ^ set(own)) + sorted(
        key for key in set(state) & set(own)
        if getattr(state[key], 'shape', None) != own[key].shape)
    if other:
        raise PseudoLabelInputError(
            f'{cache.labeler_path} holds a labeller this version of SAOTLabeler cannot load '
            f'(it differs in {", ".join(other[:3])}); the labels already in {cache.root} '
            'came from it, so they cannot be completed alike. Move that folder aside (or '
            'delete it) to label the target set again.')


def _saved_labeler_state(path: str) -> Optional[dict]:
    """The fitted labeller's state in the cache, or None if it is absent or unreadable
    (a disk error, a file cut by a crash outside :func:`atomic_torch_save`): it is then
    fitted again, as after a deleted ``labeler.pth``; the fit is seeded, so the labels
    already in the cache stay those of the same labeller."""
    if not osp.isfile(path):
        return None
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # any reader failure: the file is the problem
        print_log(f'{path} cannot be read ({load_failure_reason(err)}); fitting the '
                  'labeller again.', logger='current', level=logging.WARNING)
        return None


def _finish(cache: PseudoLabelCache, keys: Sequence[str], fingerprint: Dict,
            num_classes: int, ignore_index: int) -> None:
    """Write class statistics and the complete manifest; report empty images."""
    records, all_ignore = [], []
    for key in keys:
        counts = class_pixel_counts(cache.read_labels(key))
        records.append(dict(file=osp.relpath(cache.label_path(key), cache.root),
                            counts=counts))
        if set(counts) <= {str(ignore_index)}:
            all_ignore.append(key)
    save_class_stats(osp.join(cache.root, 'sample_class_stats.json'), records)
    totals = total_class_counts(records)
    labelled = sum(v for k, v in totals.items() if k != ignore_index)
    manifest = cache.read_manifest() or {}
    manifest.update(
        config_hash=fingerprint_hash(fingerprint), fingerprint=fingerprint, complete=True,
        num_images=len(keys), num_all_ignore=len(all_ignore), all_ignore=all_ignore,
        labelled_fraction=labelled / max(1, sum(totals.values())),
        class_histogram={str(c): totals.get(c, 0) for c in range(num_classes)})
    cache.write_manifest(manifest)
    _log(f'pseudo-labels: {len(keys)} images in {cache.root}, '
        f'{100 * manifest["labelled_fraction"]:.1f} % of pixels labelled')
    _warn_all_ignore(all_ignore)


def _warn_all_ignore(all_ignore: Sequence[str]) -> None:
    """Warn of the images (cache keys) whose pseudo-label is ignore everywhere."""
    if all_ignore:
        _log(f'pseudo-labels: {len(all_ignore)} images got no label at all (every pixel '
            f'ignore), e.g. {list(all_ignore[:3])}; they add nothing to training. Lower the '
            'confidence filter or check that their content exists in the source domain.',
            level=logging.WARNING)


def _describe(dataset) -> str:
    root = getattr(dataset, 'data_root', None)
    prefix = getattr(dataset, 'data_prefix', {}) or {}
    return f'{type(dataset).__name__}, data_root={root!r}, img_path={prefix.get("img_path")!r}'


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)
