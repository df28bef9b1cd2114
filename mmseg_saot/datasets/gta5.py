"""The GTA5 synthetic street-scene dataset in the 19 Cityscapes classes."""
from mmseg.datasets import BaseSegDataset, CityscapesDataset
from mmseg.registry import DATASETS

from .layout import check_dataset_folders


@DATASETS.register_module()
class GTA5Dataset(BaseSegDataset):
    """GTA5 (Richter et al., 2016) labelled with the 19 Cityscapes train ids.

    Expected layout (after ``tools/dataset_converters/gta5.py``)::

        data/gta5/images/00001.png
        data/gta5/labels/00001_labelTrainIds.png   # train ids, 255 = ignore

    Args:
        img_suffix (str): image suffix. Default: '.png'.
        seg_map_suffix (str): label suffix. Default: '_labelTrainIds.png'.
        **kwargs: the arguments of ``mmseg.datasets.BaseSegDataset``
            (``data_root``, ``data_prefix``, ``pipeline``, ...).
    """

    METAINFO = CityscapesDataset.METAINFO

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '_labelTrainIds.png',
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         **kwargs)

    def load_data_list(self):
        """Check the folders first, so a missing dataset reads clearly."""
        # MMEngine has already joined data_prefix and ann_file to data_root.
        check_dataset_folders(type(self).__name__, None, self.data_prefix,
                              self.img_suffix, self.ann_file,
                              seg_map_suffix=self.seg_map_suffix,
                              advice_root=self.data_root)
        return super().load_data_list()
