"""Target images paired with their cached pseudo-labels and per-pixel confidences."""
import copy
import os.path as osp
from typing import List, Optional, Union

from mmengine.dataset import Compose
from mmseg.registry import DATASETS
from torch.utils.data import Dataset

from .integrity import unreadable_label_maps
from .pseudo_label_cache import PseudoLabelCache
from mmseg_saot.utils.run_config import WORK_DIR_TOKEN
from mmseg_saot.utils.errors import UserInputError



@DATASETS.register_module()
class PseudoLabelDataset(Dataset):
    """Wrap an unlabelled target dataset; its samples load SAOT pseudo-labels.

    Sample ``i`` is the wrapped dataset's image ``i`` with ``seg_map_path`` pointing at
    its pseudo-label PNG and ``pixel_weight_path`` at its confidence PNG in
    ``pseudo_label_dir`` (written by :class:`SAOTPseudoLabelHook` or
    ``tools/generate_pseudo_labels.py``), run through ``pipeline`` (use
    ``LoadAnnotations`` + ``LoadPixelWeights`` ... ``PackSegInputsWithWeights``).
    The wrapped dataset keeps its own pipeline: it is what the labelling stage reads
    (load + resize, no augmentation). A ground-truth ``seg_map_path`` of the wrapped
    dataset is kept as ``gt_seg_map_path`` for scoring by the offline tool only;
    training never reads it.

    Args:
        dataset: the target dataset (config or object), images only or with labels.
        pseudo_label_dir: the cache folder; ``'{work_dir}'`` in it is replaced by the
            run's work_dir in ``tools/train.py`` and ``tools/generate_pseudo_labels.py``.
        pipeline: the training pipeline.
    """

    def __init__(self, dataset: Union[dict, Dataset], pseudo_label_dir: str,
                 pipeline: Optional[List[dict]] = None) -> None:
        if WORK_DIR_TOKEN in pseudo_label_dir:
            raise UserInputError(
                f'PseudoLabelDataset: pseudo_label_dir={pseudo_label_dir!r} still contains '
                f'{WORK_DIR_TOKEN}: start the run with tools/train.py (it fills in the '
                'work_dir) or give an explicit folder.')
        if isinstance(dataset, dict):
            dataset = DATASETS.build(_unserialised(dataset))
        self.target = dataset
        self._keys: Optional[List[str]] = None
        self.cache = PseudoLabelCache(
            pseudo_label_dir, option='PseudoLabelDataset pseudo_label_dir (in the shipped '
            'configs train_dataloader.dataset.target.pseudo_label_dir)')
        self.pipeline = Compose(pipeline or [])

    @property
    def metainfo(self) -> dict:
        return self.target.metainfo

    @property
    def pseudo_label_dir(self) -> str:
        return self.cache.root

    def full_init(self) -> None:
        self.target.full_init()

    def __len__(self) -> int:
        return len(self.target)

    def key(self, index: int) -> str:
        """Cache name of image ``index``: its path, without extension, under the image
        folder (the dataset's ``data_prefix['img_path']``), or, for a wrapper such as a
        ``ConcatDataset`` of two cities or images outside that folder, under the
        deepest folder that holds every image: two images never share a name (images
        that differ only in their extension, ``x.png`` and ``x.jpg``, keep it)."""
        if self._keys is None:
            paths = [self.target.get_data_info(i)['img_path'] for i in range(len(self))]
            prefix = (getattr(self.target, 'data_prefix', None) or {}).get('img_path', '')
            self._keys = _cache_keys(paths, _key_root(paths, prefix))
        return self._keys[index]

    def keys(self) -> List[str]:
        return [self.key(i) for i in range(len(self))]

    def get_data_info(self, index: int) -> dict:
        info = copy.deepcopy(self.target.get_data_info(index))
        key = self.key(index)
        info['gt_seg_map_path'] = info.pop('seg_map_path', None)
        info['seg_map_path'] = self.cache.label_path(key)
        info['pixel_weight_path'] = self.cache.confidence_path(key)
        info['reduce_zero_label'] = False  # pseudo-labels are train ids already
        info['label_map'] = None
        info['seg_fields'] = []
        return info

    def __getitem__(self, index: int) -> dict:
        info = self.get_data_info(index)
        if not self.cache.has(self.key(index)):
            raise UserInputError(
                f'PseudoLabelDataset: no pseudo-label for {info["img_path"]} in '
                f'{self.cache.root}. SAOTPseudoLabelHook writes them before training; offline, '
                'run tools/generate_pseudo_labels.py with the same config.')
        try:
            return self.pipeline(info)
        except Exception as err:
            broken = unreadable_label_maps([info['seg_map_path'], info['pixel_weight_path']])
            if not broken:
                raise
            raise UserInputError('PseudoLabelDataset: ' + self.cache.unreadable_message(
                self.key(index), broken, err, image=info['img_path'])) from None


def _unserialised(dataset: dict) -> dict:
    """``dataset``'s config with ``serialize_data=False`` on every leaf dataset (not on a
    ``ConcatDataset``/``RepeatDataset`` wrapper, which takes no such option): an empty
    folder then gives an empty set (reported by name when labelling) rather than a
    numpy error in mmengine."""
    if 'datasets' in dataset:
        return dict(dataset, datasets=[_unserialised(d) if isinstance(d, dict) else d
                                       for d in dataset['datasets']])
    if 'dataset' in dataset:
        inner = dataset['dataset']
        return dict(dataset, dataset=_unserialised(inner) if isinstance(inner, dict) else inner)
    return dict(dict(serialize_data=False), **dataset)


def _cache_keys(img_paths: List[str], root: str) -> List[str]:
    """Each image's path relative to ``root``, without its extension unless another
    image has the same name with another extension (the same path twice, as in a
    ``RepeatDataset``, is one key)."""
    relative = [osp.relpath(path, root) for path in img_paths]
    stems: dict = {}
    for rel in relative:
        stems.setdefault(osp.splitext(rel)[0], set()).add(rel)
    return [osp.splitext(rel)[0] if len(stems[osp.splitext(rel)[0]]) == 1 else rel
            for rel in relative]


def _key_root(img_paths: List[str], prefix: str) -> str:
    """The folder cache keys are relative to: ``prefix`` when every image lies under it,
    else the deepest folder common to all images."""
    def under(path: str, folder: str) -> bool:
        folder = osp.abspath(folder)
        return osp.commonpath([osp.abspath(path), folder]) == folder

    if prefix and all(under(path, prefix) for path in img_paths):
        return prefix
    folders = sorted({osp.dirname(osp.abspath(path)) for path in img_paths})
    return osp.commonpath(folders) if folders else ''
