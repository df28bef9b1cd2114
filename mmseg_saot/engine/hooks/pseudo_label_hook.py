"""Pseudo-label the target training set with SAOT before training starts."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import DATASETS, HOOKS, MODELS

from mmseg_saot.datasets.pseudo_label_dataset import PseudoLabelDataset
from mmseg_saot.engine.pseudo_labels.feature_store import FeatureStore
from mmseg_saot.engine.pseudo_labels.features import FeatureMemo
from mmseg_saot.engine.pseudo_labels.fingerprint import (dataset_files, dataset_pipelines,
                                                         image_stamps, make_fingerprint)
from mmseg_saot.engine.pseudo_labels.labelling import build_labeler
from mmseg_saot.engine.pseudo_labels.target_set import evenly_spaced, label_target_set
from mmseg_saot.utils.build_errors import (component_config_problem, explain_build_error,
                                           unknown_option_hint)
from mmseg_saot.utils.errors import ConfigError, UserInputError, check_positive_int


def find_pseudo_label_dataset(dataset) -> PseudoLabelDataset:
    """The :class:`PseudoLabelDataset` in ``dataset`` or in the wrappers around it."""
    queue = [dataset]
    while queue:
        current = queue.pop(0)
        if isinstance(current, PseudoLabelDataset):
            return current
        queue.extend(getattr(current, 'datasets', []) or [])
        if getattr(current, 'dataset', None) is not None:
            queue.append(current.dataset)
    raise UserInputError(
        'SAOTPseudoLabelHook: train_dataloader.dataset holds no PseudoLabelDataset, so '
        'there is nothing to pseudo-label; wrap the target set as in '
        'configs/_base_/uda/saot_pseudo_labels.py, or drop the hook.')


def restart_train_dataloader(runner) -> None:
    """Give the training loop a fresh dataloader iterator.

    ``IterBasedTrainLoop`` starts its iterator (and its workers, which prefetch)
    when it is built, before any hook runs: samples prefetched before the
    pseudo-labels existed failed. mmengine's ``InfiniteSampler`` keeps one index
    generator for its lifetime, which the old iterator closes when it is dropped,
    so the sampler gets a new one first (the same seeded order from the start).
    Persistent workers are ended too: their random state moved on with each sample they
    prefetched (crops, flips), and new workers start from the seeded state, as in a run
    that never prefetched, so a run trains the same whether or not its workers had
    samples to prefetch (a reused cache, a resumed run) or not (a new one).
    """
    loop = runner.train_loop
    if not hasattr(loop, 'dataloader_iterator'):  # epoch loops iterate afresh anyway
        return
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    dataloader = loop.dataloader
    workers = getattr(dataloader, '_iterator', None)  # set for persistent workers only
    if workers is not None and hasattr(workers, '_shutdown_workers'):
        workers._shutdown_workers()
        dataloader._iterator = None
    sampler = getattr(dataloader, 'sampler', None)
    if hasattr(sampler, '_indices_of_rank') and hasattr(sampler, 'indices'):
        sampler.indices = sampler._indices_of_rank()
    loop.dataloader_iterator = _InfiniteDataloaderIterator(dataloader)


def _check_uint8_label_space(num_classes: int, ignore_index: int) -> None:
    """Raise a ConfigError unless every class id and ``ignore_index`` fit the uint8
    pseudo-label PNGs, apart (a value outside 0..255 wrapped around when written)."""
    if not (isinstance(ignore_index, int) and 0 <= ignore_index <= 255):
        raise ConfigError(f'SAOTPseudoLabelHook: ignore_index={ignore_index!r} does not fit '
                          'the uint8 pseudo-label PNGs: use an ignore_index in 0..255 that '
                          'is not a class (255 as in MMSeg).')
    if num_classes > 255:
        raise ConfigError(f'SAOTPseudoLabelHook: num_classes={num_classes} does not fit the '
                          'uint8 pseudo-label PNGs (at most 255 classes, ids 0..254, besides '
                          'ignore_index).')
    if ignore_index < num_classes:
        raise ConfigError(f'SAOTPseudoLabelHook: ignore_index={ignore_index} is class '
                          f'{ignore_index} of num_classes={num_classes}: its pixels could not '
                          'be told from that class. Use ignore_index=255.')


def _check_labeler(labeler: dict, num_classes: int, ignore_index: int) -> None:
    """Build the labeller once, on an 8-wide dummy feature, so that a bad option (out of
    range, or a misspelt keyword) stops the run when the hook is built, not after the
    features of the source set were computed."""
    typed = dict(labeler, type=labeler.get('type', 'SAOTLabeler'))
    problem = component_config_problem(typed, MODELS, 'SAOTPseudoLabelHook: labeler')
    if problem:
        raise ConfigError(problem)
    try:
        build_labeler(labeler, feat_dim=8, num_classes=num_classes, ignore_index=ignore_index)
    except TypeError as err:  # an unknown keyword further down: the registry names the class
        labeler_cls = MODELS.get(labeler.get('type', 'SAOTLabeler'))
        raise ConfigError(f'SAOTPseudoLabelHook: labeler: {err}.'
                          f'{unknown_option_hint(str(err), labeler_cls)}') from None


@HOOKS.register_module()
class SAOTPseudoLabelHook(Hook):
    """Label every target training image with SAOT, once, before the first iteration.

    The target images and the cache folder come from the training set's
    :class:`PseudoLabelDataset`; the frozen features come from the runner's own
    segmentor (its data preprocessor and backbone, in its feature dtype). The work is
    :func:`~mmseg_saot.engine.pseudo_labels.label_target_set`: a complete cache
    with the same fingerprint is reused, a partial one completed, and under DDP each
    rank labels its own shard. Then the training dataloader is restarted
    (:func:`restart_train_dataloader`): its workers prefetched samples when the loop was
    built, before the labels existed or while a cache of other settings still held
    them, and the class-balanced sampler reads the class statistics again.

    Args:
        source: config of the labelled source dataset the labels come from; its
            pipeline loads, resizes to one fixed size and packs (no augmentation).
        labeler: config of the :class:`~mmseg_saot.models.labelers.SAOTLabeler`
            (``feat_dim`` and ``num_classes`` are filled in).
        num_classes: C. ignore_index: the ignore label.
        batch_size: images per backbone call.
        feature_index: which backbone output the labeller reads (-1: the last block).
        num_source_images: source images in the bank, evenly spaced (None: all).
        target_mean_images: target images that fix the target mean feature.
        feature_store_dir: optional folder of a disk store of the features the labeller
            reads (:class:`~mmseg_saot.engine.pseudo_labels.FeatureStore`, also
            ``tools/generate_pseudo_labels.py --feature-cache``, which defaults to it):
            images already stored, e.g. the sources after the tool scored the val split,
            skip the backbone. The stored values are the computed ones, so the labels do
            not depend on it, and it is not part of the cache fingerprint.
    """

    priority = 'NORMAL'

    def __init__(self, source: dict, labeler: dict, num_classes: int = 19,
                 ignore_index: int = 255, batch_size: int = 8, feature_index: int = -1,
                 num_source_images: Optional[int] = None,
                 target_mean_images: int = 64,
                 feature_store_dir: Optional[str] = None) -> None:
        check_positive_int('SAOTPseudoLabelHook', 'num_classes', num_classes)
        check_positive_int('SAOTPseudoLabelHook', 'batch_size', batch_size)
        check_positive_int('SAOTPseudoLabelHook', 'target_mean_images', target_mean_images)
        if num_source_images is not None:
            check_positive_int('SAOTPseudoLabelHook', 'num_source_images', num_source_images)
        _check_uint8_label_space(num_classes, ignore_index)
        _check_labeler(labeler, num_classes, ignore_index)
        problem = component_config_problem(source, DATASETS, 'SAOTPseudoLabelHook: source')
        if problem:
            raise ConfigError(problem)
        self.source_cfg, self.labeler_cfg = source, labeler
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.batch_size, self.feature_index = batch_size, feature_index
        self.num_source_images = num_source_images
        self.target_mean_images = target_mean_images
        self.feature_store_dir = feature_store_dir

    def before_train(self, runner) -> None:
        dataset = find_pseudo_label_dataset(runner.train_dataloader.dataset)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.run(model, dataset)
        # Always: "every label file exists" does not say they are this run's (a cache of
        # other settings is moved aside and labelled again), and a restarted loader
        # trains as a new run's does, whatever its workers prefetched before.
        restart_train_dataloader(runner)

    def build_source(self, target=None):
        """The source dataset; a misspelt option or type inside it (a wrapped dataset's,
        which the check at construction does not see) is named, not a traceback.

        Raises:
            UserInputError: it names other classes than ``target`` (MMSeg maps a
                dataset's labels to its own ``metainfo`` classes: another order or
                subset would give the pseudo-labels other class ids than the target's).
        """
        try:
            source = DATASETS.build(self.source_cfg)
        except (TypeError, KeyError) as err:
            message = explain_build_error(err, dict(source=self.source_cfg),
                                          'SAOTPseudoLabelHook')
            if message is None:
                raise
            raise ConfigError(message) from None
        mine = tuple(source.metainfo.get('classes') or ())
        theirs = tuple((target.metainfo.get('classes') or ()) if target is not None else ())
        if mine and theirs and mine != theirs:
            k = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b),
                     min(len(mine), len(theirs)))
            detail = (f'class {k} is "{mine[k]}" in the source and "{theirs[k]}" in the '
                      'target' if k < min(len(mine), len(theirs)) else
                      f'{len(mine)} vs {len(theirs)} classes')
            raise UserInputError(
                f'SAOTPseudoLabelHook: its source set names other classes than the target '
                f'set ({detail}): the pseudo-labels would carry the source\'s class ids. '
                'Give custom_hooks.N.source the target\'s classes, in its order '
                '(metainfo=dict(classes=...)).')
        return source

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise a UserInputError if ``model`` does not fit the hook's label space (the
        decode head's ``num_classes``) or ``feature_index`` (the backbone's maps)."""
        head_classes = getattr(getattr(model, 'decode_head', None), 'num_classes', None)
        if head_classes is not None and head_classes != self.num_classes:
            raise UserInputError(
                f'SAOTPseudoLabelHook: num_classes={self.num_classes} but the decode head '
                f'predicts {head_classes} classes; set num_classes={head_classes} in the '
                'hook (custom_hooks) so pseudo-labels use the head\'s label space.')
        outputs = len(getattr(getattr(model, 'backbone', None), 'out_indices', None) or ())
        if outputs and not -outputs <= self.feature_index < outputs:
            raise UserInputError(
                f'SAOTPseudoLabelHook: feature_index={self.feature_index}, but the backbone '
                f'returns {outputs} map(s) (model.backbone.out_indices); use an index in '
                f'{-outputs}..{outputs - 1} (-1: the last block).')

    def run(self, model: torch.nn.Module, dataset: PseudoLabelDataset,
            memo: Optional[dict] = None) -> dict:
        """Fill ``dataset``'s cache using ``model``'s backbone; returns the manifest.

        ``memo``: a feature memo to share with a later pass over the same images
        (default: a new one, on ``feature_store_dir`` if set).
        """
        self.check_model(model)
        if memo is None and self.feature_store_dir:
            memo = FeatureMemo(store=FeatureStore(self.feature_store_dir, model))
        source_set = self.build_source(dataset)
        keys = dataset.keys()
        bank = evenly_spaced(len(source_set), self.num_source_images)
        target_mean = evenly_spaced(len(dataset.target), self.target_mean_images)
        fingerprint = make_fingerprint(
            model=model, labeler_cfg=self.labeler_cfg, num_classes=self.num_classes,
            ignore_index=self.ignore_index, source_cfg=self.source_cfg,
            target_pipeline=dataset_pipelines(dataset.target), keys=keys,
            feature_index=self.feature_index, num_source_images=self.num_source_images,
            target_mean_images=self.target_mean_images,
            target_mean_files=dataset_files(dataset.target, target_mean),
            source_files=dataset_files(source_set, bank, labels=True),
            source_set_size=len(source_set))
        return label_target_set(
            model=model, labeler_cfg=self.labeler_cfg, source_set=source_set,
            target_set=dataset.target, keys=keys, cache=dataset.cache,
            fingerprint=fingerprint,
            stamps=image_stamps(keys, dataset_files(dataset.target)),
            num_classes=self.num_classes,
            ignore_index=self.ignore_index, batch_size=self.batch_size,
            feature_index=self.feature_index, num_source_images=self.num_source_images,
            target_mean_images=self.target_mean_images, memo=memo)


def pseudo_label_hook_configs(custom_hooks) -> list:
    """The configs in ``custom_hooks`` of a :class:`SAOTPseudoLabelHook` or a subclass,
    whatever names the type: ``'SAOTPseudoLabelHook'``, a scoped
    ``'mmseg.SAOTPseudoLabelHook'`` or the class itself (pure-Python configs)."""
    found = []
    for hook in custom_hooks or []:
        kind = hook.get('type') if isinstance(hook, dict) else None
        if isinstance(kind, str):
            kind = HOOKS.get(kind)
        if isinstance(kind, type) and issubclass(kind, SAOTPseudoLabelHook):
            found.append(hook)
    return found
