"""SAOT pseudo-labelling: learned metric, class prototypes, fused-cost OT transfer."""
from .confidence import filter_confidence
from .metric import LowRankMetric
from .metric_training import train_metric, transfer_loss
from .prototypes import ClassPrototypes, spherical_kmeans
from .retrieval import global_descriptor, retrieve
from .saot_labeler import METHODS, PseudoLabels, SAOTLabeler

__all__ = [
    'SAOTLabeler', 'PseudoLabels', 'METHODS', 'LowRankMetric', 'train_metric',
    'transfer_loss', 'ClassPrototypes', 'spherical_kmeans', 'global_descriptor', 'retrieve',
    'filter_confidence'
]
