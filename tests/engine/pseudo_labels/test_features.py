"""Loading the images to pseudo-label: a missing and a corrupt file are told apart."""
import pytest

from mmseg_saot.engine.pseudo_labels import PseudoLabelInputError
from mmseg_saot.engine.pseudo_labels.features import load_item


class Unreadable:
    """``dataset[i]`` fails as MMCV's loader does; ``get_data_info`` names the files."""

    def __init__(self, img_path):
        self.img_path = img_path

    def __getitem__(self, index):
        raise OSError('cannot decode')

    def get_data_info(self, index):
        return dict(img_path=self.img_path, seg_map_path=None)


def test_a_missing_file_is_said_to_be_missing_not_corrupt(tmp_path):
    listed = str(tmp_path / 'JPEGImages' / 'img99.jpg')
    with pytest.raises(PseudoLabelInputError, match=f'{listed} does not exist: add it, or '
                       'remove its name from the split file'):
        load_item(Unreadable(listed), 0)
    corrupt = tmp_path / 'img0.jpg'
    corrupt.write_bytes(b'garbage')
    with pytest.raises(PseudoLabelInputError, match='Replace or delete the corrupt file'):
        load_item(Unreadable(str(corrupt)), 0)
