"""Label PNGs as the converters read them: ids, never colours or wrapped 16-bit values."""
import cv2
import numpy as np
import pytest
from PIL import Image

from mmseg_saot.datasets.label_png import LabelFileError, read_index_png, read_train_ids


def test_paletted_and_16_bit_ids_are_read_as_their_values(tmp_path):
    ids = np.array([[0, 7], [33, 255]], np.uint8)
    paletted = Image.fromarray(ids, mode='P')
    paletted.putpalette(list(range(256)) * 3)  # colours that are not the ids
    paletted.save(tmp_path / 'p.png')
    cv2.imwrite(str(tmp_path / 'i16.png'), ids.astype(np.uint16))
    for name in ('p.png', 'i16.png'):
        np.testing.assert_array_equal(read_index_png(str(tmp_path / name), content='ids'), ids)
    np.testing.assert_array_equal(read_train_ids(str(tmp_path / 'i16.png')), ids)


def test_values_above_255_and_colour_renderings_are_refused_by_name(tmp_path):
    cv2.imwrite(str(tmp_path / 'wide.png'), np.array([[1, 300]], np.uint16))
    cv2.imwrite(str(tmp_path / 'colour.png'), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(LabelFileError, match=r'wide\.png is a 16-bit .* values 1\.\.300'):
        read_index_png(str(tmp_path / 'wide.png'), content='ids')
    with pytest.raises(LabelFileError, match=r'colour\.png is a RGB image'):
        read_index_png(str(tmp_path / 'colour.png'), content='ids')
    # a converted file: 300 used to wrap to 44 and count as class 44
    with pytest.raises(LabelFileError, match=r'wide\.png holds values 1\.\.300.*--force'):
        read_train_ids(str(tmp_path / 'wide.png'))
    with pytest.raises(LabelFileError, match=r'cannot read converted label file .*colour'):
        read_train_ids(str(tmp_path / 'colour.png'))


@pytest.mark.parametrize('mode, said', [
    ('LA', 'has an alpha channel'),
    ('1', r'is 1-bit \(black and white\)'),
])
def test_grey_with_alpha_and_1_bit_labels_are_not_called_colour_renderings(tmp_path, mode,
                                                                           said):
    # both were "a colour rendering of the classes": the fix is another save option
    path = tmp_path / f'{mode}.png'
    Image.new(mode, (2, 2)).save(path)
    with pytest.raises(LabelFileError, match=(
            rf'{mode}\.png {said}; save it as 8-bit single-channel \(L\) or paletted \(P\) '
            'PNG of ids')):
        read_index_png(str(path), content='ids')
