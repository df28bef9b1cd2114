from .gta5 import GTA5Dataset
from .layout import DataLayoutError, check_data_layout

__all__ = ['GTA5Dataset', 'DataLayoutError', 'check_data_layout']
