"""The frozen backbone's feature maps for a segmentor: through an optional feature cache,
and once per input within a block that predicts with several heads."""
import contextlib
import os.path as osp
import warnings
from typing import Dict, List, Optional

import torch
from torch import Tensor

from mmseg_saot.utils.paths import ensure_folder
from .feature_cache import FrozenFeatureCache, module_fingerprint


class FrozenFeaturesMixin:
    """Backbone features of an ``EncoderDecoder`` whose backbone never trains.

    :meth:`_setup_frozen_features` (called from ``__init__``, after the backbone is
    built) makes the :class:`FrozenFeatureCache` if asked; :meth:`_backbone_feat` is
    the backbone's forward through it, shared within :meth:`_features_shared`; and
    :meth:`_with_cache_hits` adds the share of cache hits to a step's log.
    """

    feature_cache: Optional[FrozenFeatureCache]

    def _setup_frozen_features(self, backbone_cfg, enabled: bool, memory_gb: float,
                               dtype: str, folder: Optional[str], owner: str) -> None:
        """Set up the cache (``enabled``) in ``memory_gb`` GiB of ``dtype`` storage, also
        on disk under ``folder`` when given; ``backbone_cfg`` names the disk subfolder
        with the weights; ``owner`` prefixes messages."""
        self.feature_cache = None
        if folder and not enabled:
            warnings.warn(f'{owner}: model.feature_cache_dir={folder!r} is not used: the '
                          'feature cache is off (set model.feature_cache=True to use it).')
        self._feature_cache_dir, self._backbone_repr = folder, repr(backbone_cfg)
        if enabled:
            if folder:
                ensure_folder(folder, 'model.feature_cache_dir')
            # its disk folder is named at the first use (_cache_folder): by then a
            # checkpoint that carries backbone weights (load_from, --resume) is loaded
            self.feature_cache = FrozenFeatureCache(memory_gb, dtype)
        self._shared_feats: Optional[Dict] = None  # per-call memo of _features_shared

    def _backbone_feat(self, inputs: Tensor) -> List[Tensor]:
        """The frozen backbone's maps, once per input within :meth:`_features_shared`."""
        if self._shared_feats is not None:
            key = (inputs.data_ptr(), tuple(inputs.shape), tuple(inputs.stride()))
            if key not in self._shared_feats:
                # the memo holds the input too: its memory cannot be reused while it lives
                self._shared_feats[key] = (inputs, self._backbone_maps(inputs))
            return self._shared_feats[key][1]
        return self._backbone_maps(inputs)

    def _backbone_maps(self, inputs: Tensor) -> List[Tensor]:
        """Through the cache when enabled: the frozen backbone's maps only (a neck, which
        may train, runs on them every time: cached neck outputs kept a freed autograd
        graph)."""
        if self.feature_cache is None:
            return self.backbone(inputs)
        if self._feature_cache_dir and self.feature_cache.folder is None:
            self.feature_cache.folder = self._cache_folder()
        return self.feature_cache.features(inputs, self.backbone)

    def _cache_folder(self) -> str:
        """``<feature_cache_dir>/<fingerprint of the backbone's weights and config>``, from
        the weights the backbone holds now, not those it was built with, and from the
        version of the backbone's feature code."""
        version = getattr(self.backbone, 'feature_version', None)
        return osp.join(self._feature_cache_dir, module_fingerprint(
            self.backbone, f'{self._backbone_repr} feature_version={version}'))

    @contextlib.contextmanager
    def _features_shared(self):
        """Within the block, an input (or a crop view of it) goes through the backbone once."""
        self._shared_feats = {}
        try:
            yield
        finally:
            self._shared_feats = None

    def _with_cache_hits(self, step) -> Dict[str, Tensor]:
        """``step()``'s losses; with the cache on, plus ``feature_cache_hits`` (logged, not
        a loss): the share of the step's backbone inputs whose features came from it."""
        if self.feature_cache is None:
            return step()
        hits, misses = self.feature_cache.hits, self.feature_cache.misses
        losses = step()
        new_hits = self.feature_cache.hits - hits
        looked_up = new_hits + self.feature_cache.misses - misses
        device = next(iter(losses.values())).device
        losses['feature_cache_hits'] = torch.tensor(new_hits / max(looked_up, 1),
                                                    device=device)
        return losses
