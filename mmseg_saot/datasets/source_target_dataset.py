"""Pairs of a labelled source sample and a target sample, for UDA training batches."""
from typing import Union

import numpy as np
from mmengine.dist import get_dist_info
from mmseg.registry import DATASETS
from torch.utils.data import Dataset

from mmseg_saot.utils.errors import UserInputError


def _build(dataset: Union[dict, Dataset]) -> Dataset:
    return DATASETS.build(dataset) if isinstance(dataset, dict) else dataset


@DATASETS.register_module()
class SourceTargetDataset(Dataset):
    """Item ``i``: target sample ``i`` together with a random labelled source sample.

    An item is ``{'inputs': {'source': ..., 'target': ...}, 'data_samples': {'source':
    ..., 'target': ...}}``: each branch is what its own dataset's pipeline packs, and
    :class:`~mmseg_saot.models.data_preprocessors.UDADataPreProcessor` preprocesses
    the branches of a batch separately. Indices (and so a sampler such as
    :class:`ClassBalancedSampler`) refer to the target; the source sample is drawn
    with ``numpy.random``, which mmengine seeds per dataloader worker, so a run is
    reproducible under its seed, as MMSeg's random transforms are (under DDP, each
    rank draws its own sources, workers or not).

    Args:
        source: the labelled source dataset (config or object), e.g. GTA5 with its
            training pipeline.
        target: the target dataset, typically a :class:`PseudoLabelDataset`.

    Raises:
        UserInputError: the two datasets name different classes, or one is empty.
    """

    def __init__(self, source: Union[dict, Dataset], target: Union[dict, Dataset]) -> None:
        self.source, self.target = _build(source), _build(target)
        src_classes = tuple(self.source.metainfo.get('classes') or ())
        tgt_classes = tuple(self.target.metainfo.get('classes') or ())
        if src_classes != tgt_classes:
            raise UserInputError(
                'SourceTargetDataset: source and target name different classes '
                f'({len(src_classes)} vs {len(tgt_classes)}): both must use the same '
                'label space (e.g. Cityscapes train ids for GTA5 -> Cityscapes).')
        for branch, dataset in (('source', self.source), ('target', self.target)):
            if len(dataset) == 0:
                raise UserInputError(f'SourceTargetDataset: the {branch} dataset is empty '
                                     f'({_describe(dataset)}); check its data_root and '
                                     'data_prefix.')

    @property
    def metainfo(self) -> dict:
        return self.target.metainfo

    @property
    def dataset(self) -> Dataset:
        """The target (what the pseudo-label hook and the sampler look for)."""
        return self.target

    @property
    def cache(self):
        """The target's pseudo-label cache, if it has one (for ClassBalancedSampler)."""
        return getattr(self.target, 'cache', None)

    def full_init(self) -> None:
        for dataset in (self.source, self.target):
            if hasattr(dataset, 'full_init'):
                dataset.full_init()

    def __len__(self) -> int:
        return len(self.target)

    def get_data_info(self, index: int) -> dict:
        """The target sample's info (sampling statistics refer to the target)."""
        return self.target.get_data_info(index)

    def __getitem__(self, index: int) -> dict:
        target = self.target[index]
        source = self.source[self._source_index()]
        return dict(inputs=dict(source=source['inputs'], target=target['inputs']),
                    data_samples=dict(source=source['data_samples'],
                                      target=target['data_samples']))

    def _source_index(self) -> int:
        """A random source index. Under DDP without DataLoader workers every rank's
        ``numpy.random`` holds the same seeded state (mmengine seeds workers by rank, not
        the main process), so all ranks drew the same sources: a rank other than 0 mixes
        its rank into its draw. Rank 0, and a single process, draw as plain numpy does."""
        rank, _ = get_dist_info()
        if rank == 0:
            return int(np.random.randint(len(self.source)))
        seed = int(np.random.randint(2 ** 31))
        return int(np.random.default_rng([seed, rank]).integers(len(self.source)))


def _describe(dataset) -> str:
    """Type and image folder of ``dataset`` (of the images a PseudoLabelDataset wraps)."""
    dataset = getattr(dataset, 'target', dataset)
    prefix = getattr(dataset, 'data_prefix', None) or {}
    return (f'{type(dataset).__name__}, data_root={getattr(dataset, "data_root", None)!r}, '
            f'img_path={prefix.get("img_path")!r}')
