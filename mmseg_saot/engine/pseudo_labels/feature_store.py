"""A disk store of frozen patch features, addressed by what determines them.

The pseudo-labelling tools read the same images many times across runs: every
``tools/generate_pseudo_labels.py`` run of a labeller sweep, every shift of
``tools/benchmark_shift.py`` (the same 200 source images). With a store the backbone
runs once per image; later runs only load and preprocess the image to find its file.

An entry's key hashes the pipeline's output for the image (the resized ``uint8``
tensor, and the label map when labels are asked for), the backbone output index and
the label settings; entries live in a subfolder named by the fingerprint of the
backbone (weights, output blocks, norm, dtype, the version of its feature code) and
the data preprocessor, so features of another backbone, other weights or blocks,
another normalisation, older backbone code, another resize or an edited image file
are never read back. Features are stored in fp32 as computed: a
hit gives the numbers a miss would.
"""
import hashlib
import os.path as osp
from typing import Optional, Tuple

import torch

from mmseg_saot.models.segmentors.feature_cache import module_fingerprint
from mmseg_saot.utils.digests import update_digest
from mmseg_saot.utils.atomic import atomic_torch_save
from mmseg_saot.utils.paths import ensure_folder


_BACKBONE_SETTINGS = ('model_name', 'out_indices', 'norm', 'feature_dtype', 'patch_size',
                      'feature_version')
_PREPROCESSOR_SETTINGS = ('channel_conversion', '_enable_normalize', 'size', 'size_divisor',
                          'pad_val', 'test_cfg')


def _settings(module: torch.nn.Module, names) -> str:
    return type(module).__name__ + ' ' + ' '.join(
        f'{name}={getattr(module, name, None)!r}' for name in names)


def feature_settings(model: torch.nn.Module) -> str:
    """What decides ``model``'s frozen features besides the backbone's weights, as text:
    the backbone's settings (which blocks it outputs, their norm and dtype) and the data
    preprocessor's (channel order, padding; a hash of its tensors, mean and std)."""
    preprocessor = model.data_preprocessor
    return ' | '.join([_settings(model.backbone, _BACKBONE_SETTINGS),
                       _settings(preprocessor, _PREPROCESSOR_SETTINGS),
                       module_fingerprint(preprocessor)])


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of ``model.backbone``'s weights and of :func:`feature_settings`."""
    return module_fingerprint(model.backbone, config=feature_settings(model))


class FeatureStore:
    """Frozen features of images on disk, one ``torch.save`` file per image.

    Args:
        folder: the store's root; entries go to ``folder/<model fingerprint>/<key[:2]>/``.
            Several runs, tools and backbones may share one root.
        model: the segmentor whose ``backbone`` and ``data_preprocessor`` compute the
            features.

    Attributes:
        folder: the subfolder of this model's entries.
        hits, misses: entries found / not found by :meth:`load`.
    """

    def __init__(self, folder: str, model: torch.nn.Module) -> None:
        ensure_folder(folder, 'feature store (SAOTPseudoLabelHook feature_store_dir or '
                      '--feature-cache)')
        self.folder = osp.join(folder, model_fingerprint(model))
        self.hits = self.misses = 0

    @staticmethod
    def key(item: dict, *, feature_index: int,
            label_settings: Optional[Tuple[int, int, int]] = None) -> str:
        """The entry key of one pipeline output.

        Args:
            item: ``dataset[i]``: ``inputs`` (the image tensor) and ``data_samples``.
            feature_index: the backbone output kept.
            label_settings: ``(num_classes, ignore_index, patch)`` when patch labels are
                stored too (the label map is then hashed as well), else None.
        """
        digest = hashlib.blake2b(f'{feature_index} {label_settings}'.encode(), digest_size=16)
        update_digest(digest, item['inputs'])
        if label_settings is not None and 'gt_sem_seg' in item['data_samples']:
            update_digest(digest, item['data_samples'].gt_sem_seg.data)
        return digest.hexdigest()

    def _path(self, key: str) -> str:
        return osp.join(self.folder, key[:2], f'{key}.pt')

    def load(self, key: str) -> Optional[dict]:
        """The stored entry (``feats``, ``labels``, ``img_shape``, ``ori_shape``) or None.

        An unreadable file (a disk filled mid-write by another program) counts as a miss
        and is overwritten by the next :meth:`save`.
        """
        path = self._path(key)
        entry = None
        if osp.exists(path):
            try:
                entry = torch.load(path, map_location='cpu', weights_only=True)
            except Exception:  # truncated or foreign file: recompute
                entry = None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def save(self, key: str, *, feats: torch.Tensor, labels: Optional[torch.Tensor],
             img_shape: Tuple[int, int], ori_shape: Tuple[int, int]) -> None:
        """Write one entry atomically (a temporary file, then a rename)."""
        # cloned: a row of a batch is a view, and torch.save writes a view's whole storage
        atomic_torch_save(dict(feats=feats.detach().float().cpu().clone(),
                               labels=None if labels is None else labels.detach().cpu().clone(),
                               img_shape=tuple(img_shape), ori_shape=tuple(ori_shape)),
                          self._path(key))
