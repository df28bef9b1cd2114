"""The pseudo-labelling stage: frozen features, SAOT labelling, the on-disk cache."""
from mmseg_saot.datasets.pseudo_label_cache import PseudoLabelCache, fingerprint_hash
from .features import ImageFeatures, PseudoLabelInputError, iter_features
from .labelling import ImageLabels, build_labeler, fit_labeler, label_image
from .target_set import label_target_set

__all__ = [
    'PseudoLabelCache', 'fingerprint_hash', 'ImageFeatures', 'PseudoLabelInputError',
    'iter_features', 'ImageLabels', 'build_labeler', 'fit_labeler', 'label_image',
    'label_target_set'
]
