"""Rare-class sampling: draw images by the class statistics of their (pseudo-)labels."""
import itertools
import math
import os
import os.path as osp
import warnings
from typing import Dict, Iterator, List, Optional, Sequence

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from mmseg.registry import DATA_SAMPLERS
from torch.utils.data import Sampler

from mmseg_saot.utils.errors import UserInputError, check_integer, check_number
from ..class_stats import STATS_FILENAME, load_class_stats


def class_probabilities(pixels: Dict[int, int], temperature: float) -> Dict[int, float]:
    """P(c) proportional to ``exp((1 - f_c) / T)``, f_c the pixel share of class c.

    Rare classes get more weight; ``T -> inf`` is uniform over classes, ``T -> 0``
    picks the rarest (DAFormer's rare-class sampling).
    """
    total = sum(pixels.values())
    if total == 0:
        return {}
    logits = {c: (1.0 - n / total) / temperature for c, n in pixels.items()}
    top = max(logits.values())
    weights = {c: math.exp(v - top) for c, v in logits.items()}
    norm = sum(weights.values())
    return {c: w / norm for c, w in weights.items()}


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(Sampler):
    """Infinite sampler that first draws a class, then an image containing it.

    The statistics come from ``sample_class_stats.json`` (per-image class pixel
    counts, see :mod:`mmseg_saot.datasets.class_stats`): by default the one in a
    :class:`PseudoLabelDataset`'s cache (written by the pseudo-label hook) or in the
    dataset's ``data_root`` (written by the converters). They are read at every new
    iteration pass and re-read whenever the file changes, so fresh pseudo-labels are
    used as soon as the training iterator restarts. Until the file exists the
    sampler draws uniformly (with a warning).

    Classes with fewer than ``min_pixels`` pixels in an image do not count as
    present in it; ignore (255) never counts. Deterministic for a given ``seed``;
    under DDP all ranks draw one sequence and rank r takes items r, r + W, ...

    Args:
        dataset: the dataset sampled (``get_data_info(i)['seg_map_path']`` names the
            label file of image i).
        temperature: T of :func:`class_probabilities` (DAFormer: 0.01).
        min_pixels: pixels a class needs in an image to count as present.
        stats_file: explicit statistics file (default: see above).
        ignore_index: the ignore label.
        seed: random seed (None: one synchronised across ranks).
    """

    def __init__(self, dataset, temperature: float = 0.01, min_pixels: int = 3000,
                 stats_file: Optional[str] = None, ignore_index: int = 255,
                 seed: Optional[int] = None) -> None:
        check_number('ClassBalancedSampler', 'temperature', temperature, above=0.0)
        check_integer('ClassBalancedSampler', 'min_pixels', min_pixels, minimum=0)
        self.dataset, self.temperature, self.min_pixels = dataset, temperature, min_pixels
        self.ignore_index = ignore_index
        self.stats_file = stats_file or self._default_stats_file(dataset)
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else seed
        self._loaded_stamp = None
        self._largest_count, self._all_unlisted = 0, False
        self.class_probs: Dict[int, float] = {}
        self.images_of_class: Dict[int, List[int]] = {}

    @staticmethod
    def _default_stats_file(dataset) -> str:
        """In the pseudo-label cache or the ``data_root`` of ``dataset``, or of the
        dataset it wraps (``.dataset``: a SourceTargetDataset's target, a
        RepeatDataset's set), the first found; the working folder if none has one."""
        for _ in range(8):  # wrappers nest a few levels at most
            cache = getattr(dataset, 'cache', None)
            root = cache.root if cache is not None else getattr(dataset, 'data_root', None)
            inner = getattr(dataset, 'dataset', None)
            if root or inner is None or inner is dataset:
                break
            dataset = inner
        return osp.join(root or '', STATS_FILENAME)

    def __len__(self) -> int:
        return len(self.dataset)

    def refresh(self) -> bool:
        """(Re)read the statistics if the file changed; whether they are usable."""
        try:
            stat = os.stat(self.stats_file)
            # a copy that keeps the modification time (cp -p) still changes size or inode
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            return False
        if stamp != self._loaded_stamp:
            self._index(self._read_stats())
            self._loaded_stamp = stamp
        return bool(self.class_probs)

    def _read_stats(self) -> List[dict]:
        """The records of :attr:`stats_file`; a file of another format (DAFormer's
        converters write a flat one under the same name) is named with the fix."""
        try:
            return load_class_stats(self.stats_file)
        except ValueError as err:  # json.JSONDecodeError is one too
            raise UserInputError(
                f'ClassBalancedSampler: {err}. Another tool (e.g. DAFormer\'s converters) '
                'may have written it under the same name: write it again with python '
                'tools/dataset_converters/gta5.py ROOT (it always writes it) or '
                'cityscapes.py ROOT --class-stats, or point the sampler\'s stats_file at a '
                'file of this format.') from None

    def _index(self, records: Sequence[dict]) -> None:
        """Map the records to dataset indices; class pixel totals and image lists."""
        root = osp.dirname(self.stats_file)
        by_file = {osp.normpath(r['file']): r['counts'] for r in records}
        pixels: Dict[int, int] = {}
        images: Dict[int, List[int]] = {}
        unlisted: List[str] = []
        for index in range(len(self.dataset)):
            seg = self.dataset.get_data_info(index).get('seg_map_path')
            counts = by_file.get(osp.normpath(osp.relpath(seg, root))) if seg else None
            if seg and counts is None:
                unlisted.append(seg)
            for key, count in (counts or {}).items():
                cls = int(key)
                if cls == self.ignore_index:
                    continue
                pixels[cls] = pixels.get(cls, 0) + int(count)
                if int(count) > 0 and count >= self.min_pixels:  # a listed 0 is no pixel
                    images.setdefault(cls, []).append(index)
        self.images_of_class = images
        self._largest_count = max((int(c) for r in records for k, c in r['counts'].items()
                                   if int(k) != self.ignore_index), default=0)
        self._all_unlisted = len(unlisted) == len(self.dataset)
        if unlisted:
            self._report_unlisted(unlisted)
        self.class_probs = {c: p for c, p in
                            class_probabilities(pixels, self.temperature).items() if c in images}

    def _report_unlisted(self, unlisted: List[str]) -> None:
        """Warn that images missing from the statistics are never drawn (a file written
        for another or an older version of the image set)."""
        total = len(self.dataset)
        shown = ', '.join(unlisted[:3]) + (', ...' if len(unlisted) > 3 else '')
        effect = ('images are drawn uniformly instead' if len(unlisted) == total else
                  'class-balanced sampling never draws them')
        warnings.warn(f'ClassBalancedSampler: {len(unlisted)} of the {total} images of '
                      f'{type(self.dataset).__name__} have no entry in {self.stats_file} '
                      f'({shown}): {effect}. The file was written for other images or an '
                      'older copy of them; write it again for these (python '
                      'tools/dataset_converters/gta5.py ROOT, which always writes it, or '
                      'cityscapes.py ROOT --class-stats).')

    def _draws(self) -> Iterator[int]:
        if len(self.dataset) == 0:  # uniform draws from nothing would loop forever
            root = getattr(self.dataset, 'data_root', None)
            raise UserInputError(
                f'ClassBalancedSampler: its dataset ({type(self.dataset).__name__}'
                f'{f" under {root}" if root else ""}) has no samples, so there is nothing to '
                'draw; check its image folder and split file (python tools/check_data.py '
                'CONFIG).')
        gen = torch.Generator().manual_seed(self.seed)
        if not self.refresh():
            self._report_uniform()
            while True:
                yield from torch.randperm(len(self.dataset), generator=gen).tolist()
        classes = sorted(self.class_probs)
        probs = torch.tensor([self.class_probs[c] for c in classes], dtype=torch.float64)
        while True:
            cls = classes[int(torch.multinomial(probs, 1, generator=gen))]
            members = self.images_of_class[cls]
            yield members[int(torch.randint(len(members), (1,), generator=gen))]

    def _report_uniform(self) -> None:
        """Say that images are drawn uniformly for now: in a note where the pseudo-label
        hook is about to write the statistics (the training loop draws its first indices
        when it is built, before the hook labels, and the hook restarts it), else in a
        warning."""
        if self._loaded_stamp is not None and self._all_unlisted:
            return  # _report_unlisted said it
        if self._loaded_stamp is not None and self._largest_count:
            warnings.warn(f'ClassBalancedSampler: no class covers min_pixels='
                          f'{self.min_pixels} pixels in any image of {self.stats_file} (the '
                          f'most any class has in one image is {self._largest_count}), so '
                          'images are drawn uniformly; set min_pixels below that.')
            return
        if not osp.exists(self.stats_file) and self._stats_come_from_the_hook():
            print_log(f'ClassBalancedSampler: {self.stats_file} is written with the '
                      'pseudo-labels; class-balanced sampling starts when they are.',
                      logger='current')
            return
        warnings.warn(f'ClassBalancedSampler: no usable class statistics at '
                      f'{self.stats_file} yet; drawing images uniformly until the '
                      'iterator restarts after they are written.')

    def _stats_come_from_the_hook(self) -> bool:
        cache = getattr(self.dataset, 'cache', None)
        return (cache is not None and
                osp.normpath(self.stats_file) == osp.normpath(self._default_stats_file(
                    self.dataset)))

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(self._draws(), self.rank, None, self.world_size)
