"""A content-addressed memory cache of frozen-backbone features.

The backbone never changes during training, so the features of an input that
was seen before can be reused instead of recomputed. Entries are keyed by a hash
of the *preprocessed image tensor itself*: a deterministic pipeline (load,
resize, flip) hits the cache from its second epoch on, while a random crop or a
photometric change simply gives a new key — never a stale feature.
"""
import hashlib
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from mmseg_saot.utils.atomic import atomic_torch_save
from mmseg_saot.utils.digests import update_digest
from mmseg_saot.utils.errors import ConfigError, check_number

_STORAGE_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'fp32': torch.float32}

FeatureMaps = Tuple[torch.Tensor, ...]


def image_key(image: torch.Tensor) -> str:
    """A 128-bit hash of one image tensor's shape, dtype and values."""
    digest = hashlib.blake2b(digest_size=16)
    update_digest(digest, image)
    return digest.hexdigest()


def module_fingerprint(module: torch.nn.Module, config: str = '') -> str:
    """A hash of a module's parameters and buffers (names and values) and ``config``.

    Disk caches live in a subfolder named by it, so features of another backbone or
    other weights are never read back; settings that change the output without a
    tensor (which blocks are read, a dtype) must come in through ``config``.
    """
    digest = hashlib.blake2b(config.encode(), digest_size=8)
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        update_digest(digest, tensor)
    return digest.hexdigest()


class FrozenFeatureCache:
    """Per-image feature maps of a frozen backbone, stored in ``dtype`` on the CPU.

    Every returned map is rounded to the storage dtype (and back to fp32) whether it
    was a hit or a miss, and the images not cached are computed one at a time, so a run
    gives the same numbers whichever of its images happened to be cached: a resumed run
    (empty cache) matches an uninterrupted one bit for bit. (A backbone's output can
    differ in the last bit with the other images of its batch, CPU matrix products being
    blocked by batch size; fp16 rounding sometimes makes that visible, and a cold cache
    computes other batches than a warm one.)
    The memory cache stops growing at ``max_gb``; images beyond it are recomputed
    or, with a ``folder``, read back from disk. On disk every entry is one file
    ``<folder>/<key[:2]>/<key>.pt`` written atomically, so runs of one backbone
    (a baseline and the main run, a resumed run, DDP ranks) share it safely.

    Args:
        max_gb: memory budget in GiB.
        dtype: storage precision, ``'fp16'`` (default), ``'bf16'`` or ``'fp32'``.
        folder: optional disk cache (no budget: ~1.5 MB per ViT-S/14 image at
            448x224 with four maps in fp16). Use one folder per backbone and weights.

    Attributes:
        hits, misses: images served from / added to (or computed outside) the cache.
    """

    def __init__(self, max_gb: float = 8.0, dtype: str = 'fp16',
                 folder: Optional[str] = None) -> None:
        if dtype not in _STORAGE_DTYPES:
            raise ConfigError(f'feature_cache: dtype must be one of {sorted(_STORAGE_DTYPES)}, '
                              f'got {dtype!r}.')
        check_number('feature_cache', 'max_gb', max_gb, above=0.0)
        self.max_bytes = int(max_gb * (1 << 30))
        self.dtype = _STORAGE_DTYPES[dtype]
        self.num_bytes = 0
        self.folder = folder
        self.hits = self.misses = 0
        self._entries: Dict[str, FeatureMaps] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _path(self, key: str) -> str:
        return osp.join(self.folder, key[:2], f'{key}.pt')

    def _store(self, key: str, maps: Sequence[torch.Tensor], on_disk: bool) -> None:
        maps = tuple(m.cpu() for m in maps)
        size = sum(m.numel() * m.element_size() for m in maps)
        if self.num_bytes + size <= self.max_bytes:
            self._entries[key] = maps
            self.num_bytes += size
        if self.folder is not None and not on_disk:
            atomic_torch_save(maps, self._path(key))

    def _lookup(self, key: str) -> Optional[FeatureMaps]:
        if key in self._entries:
            return self._entries[key]
        if self.folder is not None and osp.exists(self._path(key)):
            maps = tuple(torch.load(self._path(key), map_location='cpu', weights_only=True))
            if all(m.dtype == self.dtype for m in maps):
                self._store(key, maps, on_disk=True)
                return maps
        return None

    def features(self, images: torch.Tensor,
                 compute: Callable[[torch.Tensor], Sequence[torch.Tensor]]) -> List[torch.Tensor]:
        """Feature maps of a batch, computing only the images not cached yet.

        Args:
            images: ``(B, 3, H, W)`` preprocessed images.
            compute: the frozen backbone, ``(b, 3, H, W)`` -> maps ``(b, C_i, h_i, w_i)``;
                stored detached.

        Returns:
            list of ``(B, C_i, h_i, w_i)`` fp32 maps on ``images.device``.
        """
        keys = [image_key(image) for image in images.detach().cpu()]  # one copy per batch
        per_image: List[Optional[FeatureMaps]] = [self._lookup(key) for key in keys]
        missing = [i for i, maps in enumerate(per_image) if maps is None]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        for index in missing:  # one image at a time: its features never depend on the batch
            if per_image[index] is None:  # not an image met earlier in this batch
                maps = tuple(m[0].detach().to(self.dtype).cpu()
                             for m in compute(images[index:index + 1]))
                for other in missing:
                    if keys[other] == keys[index]:
                        per_image[other] = maps
                self._store(keys[index], maps, on_disk=False)
        return [torch.stack([maps[level] for maps in per_image]).to(images.device,
                                                                    torch.float32)
                for level in range(len(per_image[0]))]
