import numpy as np
import pytest
from PIL import Image

from mmseg_saot.datasets.integrity import (check_sample, decode_backends, label_value_problem,
                                           read_label_map, unreadable_label_maps)


def _write(path, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8 if mode != 'I;16' else np.uint16),
                    mode=mode).save(path)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / 'img.png'
    _write(path, np.zeros((6, 8, 3)))
    return str(path)


def test_a_good_sample_has_no_problem(image, tmp_path):
    label = tmp_path / 'lab.png'
    _write(label, np.array([[0, 1, 255, 18]] * 6).repeat(2, axis=1))
    assert check_sample(image, str(label), num_classes=19) == []
    assert check_sample(image, None, num_classes=19) == []  # unlabelled target


def test_unreadable_files_are_named(image, tmp_path):
    garbage = tmp_path / 'bad.png'
    garbage.write_bytes(b'not an image')
    assert check_sample(str(garbage), None, 19)[0].startswith(
        f'{garbage}: cannot read the image (')
    missing = tmp_path / 'missing.png'
    assert check_sample(image, str(missing), 19) == [
        f'{missing}: cannot read the label map (FileNotFoundError: [Errno 2] No such file or '
        f"directory: '{missing}')"]
    truncated = tmp_path / 'truncated.png'
    _write(truncated, np.zeros((60, 80)))
    truncated.write_bytes(truncated.read_bytes()[:-40])
    assert 'cannot read the label map' in check_sample(image, str(truncated), 19)[0]


def test_label_maps_are_read_as_stored_and_the_unreadable_ones_listed(tmp_path):
    good, garbage = tmp_path / 'good.png', tmp_path / 'garbage.png'
    _write(good, [[3, 255], [0, 7]])
    garbage.write_bytes(b'\x89PNG not really')
    assert read_label_map(str(good)).tolist() == [[3, 255], [0, 7]]
    missing = str(tmp_path / 'missing.png')
    assert unreadable_label_maps([str(good), str(garbage), missing]) == [str(garbage), missing]


def test_size_channels_and_values_are_checked(image, tmp_path):
    small, rgb, raw = tmp_path / 'small.png', tmp_path / 'rgb.png', tmp_path / 'raw.png'
    _write(small, np.zeros((3, 4)))
    _write(rgb, np.zeros((6, 8, 3)))
    _write(raw, np.full((6, 8), 26))  # a Cityscapes label id, not a train id
    assert check_sample(image, str(small), 19) == [
        f'{small}: the label map is 4x3 but its image is 8x6']
    assert check_sample(image, str(rgb), 19) == [
        f'{rgb}: the label map has 3 channels; MMSeg needs one channel of class ids (a '
        'grayscale or palette PNG)']
    assert check_sample(image, str(raw), 19) == [
        f'{raw}: label values 26 are not class ids 0-18 nor the ignore index 255 (labels not '
        'converted to train ids?)']


def test_label_values_follow_reduce_zero_label_and_label_map():
    assert label_value_problem([0, 5, 255], num_classes=5, ignore_index=255) == (
        'label values 5 are not class ids 0-4 nor the ignore index 255 (labels not converted '
        'to train ids?)')
    # reduce_zero_label: 0 -> ignore, v -> v - 1, so 5 is class 4
    assert label_value_problem([0, 5, 255], 5, 255, reduce_zero_label=True) is None
    assert label_value_problem([0, 9], 5, 255, label_map={9: 255}) is None
    assert label_value_problem([0, 9], 5, 255, label_map={9: 7}).startswith('label values 9 ')
    assert label_value_problem([0, 300], 5, 255).startswith('values up to 300 (a 16-bit')
    many = label_value_problem(list(range(30, 45)), 5, 255)
    assert many.startswith('label values 30, 31, 32, 33, 34, 35, 36, 37, ... are not')


def test_the_pipeline_decoding_backends_are_used(image, tmp_path):
    palette = tmp_path / 'palette.png'
    label = Image.fromarray(np.array([[0, 1, 2, 3]] * 6, dtype=np.uint8).repeat(2, axis=1),
                            mode='P')
    label.putpalette([128, 64, 128, 244, 35, 232, 70, 70, 70, 102, 102, 156] + [0] * 756)
    label.save(palette)
    # Pillow (MMSeg's default) gives the class ids; OpenCV gives the palette's colours
    assert check_sample(image, str(palette), 19) == []
    assert read_label_map(str(palette), 'cv2').shape == (6, 8, 3)
    assert check_sample(image, str(palette), 19, label_backend='cv2') == [
        f'{palette}: the label map has 3 channels; MMSeg needs one channel of class ids (a '
        'grayscale or palette PNG)']
    assert check_sample(image, None, 19, image_backend='pillow') == []


def test_decode_backends_are_read_off_the_loading_transforms():
    assert decode_backends(dict(pipeline=[dict(type='LoadImageFromFile')])) == dict(
        image_backend='cv2', label_backend='pillow')  # MMSeg's defaults
    pipeline = [dict(type='mmseg.LoadImageFromFile', imdecode_backend='pillow'),
                dict(type='LoadAnnotations', imdecode_backend='cv2'),
                dict(type='PackSegInputs')]
    assert decode_backends(dict(pipeline=pipeline)) == dict(image_backend='pillow',
                                                            label_backend='cv2')
    assert decode_backends(dict(pipeline='not a list')) == dict(image_backend='cv2',
                                                                label_backend='pillow')
