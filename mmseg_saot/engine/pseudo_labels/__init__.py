"""The pseudo-labelling stage: frozen features, SAOT labelling, the on-disk cache."""
from mmseg_saot.datasets.pseudo_label_cache import PseudoLabelCache, fingerprint_hash
from .feature_store import FeatureStore
from .features import FeatureMemo, ImageFeatures, PseudoLabelInputError, iter_features
from .labelling import ImageLabels, build_labeler, fit_labeler, label_image
from .target_set import label_target_set

__all__ = [
    'PseudoLabelCache', 'fingerprint_hash', 'FeatureStore', 'FeatureMemo', 'ImageFeatures',
    'PseudoLabelInputError', 'iter_features', 'ImageLabels', 'build_labeler', 'fit_labeler', 'label_image',
    'label_target_set'
]
