from .gta5 import GTA5Dataset
from .layout import DataLayoutError, check_data_layout
from .pseudo_label_dataset import PseudoLabelDataset
from .samplers import ClassBalancedSampler
from .source_target_dataset import SourceTargetDataset
from .transforms import LoadPixelWeights, PackSegInputsWithWeights

__all__ = [
    'GTA5Dataset', 'DataLayoutError', 'check_data_layout', 'PseudoLabelDataset',
    'LoadPixelWeights', 'PackSegInputsWithWeights', 'ClassBalancedSampler',
    'SourceTargetDataset'
]
