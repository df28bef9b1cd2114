"""The Cityscapes label table and the label-id -> train-id lookup."""
import numpy as np
import pytest

from mmseg_saot.datasets import cityscapes_labels as cl


def test_table_equals_cityscapesscripts():
    theirs = pytest.importorskip('cityscapesscripts.helpers.labels').labels
    assert [(label.name, label.id, label.trainId, tuple(label.color))
            for label in theirs] == list(cl.LABELS)


def test_classes_and_palette_follow_the_train_ids():
    by_train_id = {train_id: (name, color)
                   for name, _, train_id, color in reversed(cl.LABELS)}
    assert cl.NUM_CLASSES == 19
    assert cl.CLASSES[:3] == ('road', 'sidewalk', 'building')
    assert cl.CLASSES[-1] == 'bicycle'
    for train_id, (name, color) in enumerate(zip(cl.CLASSES, cl.PALETTE)):
        assert by_train_id[train_id] == (name, color)


def test_every_label_id_maps_as_in_the_table():
    lut = cl.LABEL_ID_LUT
    assert lut.shape == (256,) and lut.dtype == np.uint8
    for name, label_id, train_id, _ in cl.LABELS:
        if label_id >= 0:
            assert lut[label_id] == (255 if train_id < 0 else train_id), name
    assert (lut[34:] == 255).all()
    # 19 train ids reached, from exactly 19 label ids
    assert sorted(set(lut[:34]) - {255}) == list(range(19))
    assert (lut[:34] != 255).sum() == 19


def test_label_ids_to_train_ids_is_the_elementwise_mapping():
    rng = np.random.default_rng(0)
    label_map = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    train_map = cl.label_ids_to_train_ids(label_map)
    assert train_map.shape == label_map.shape and train_map.dtype == np.uint8
    expected = [cl.LABEL_ID_TO_TRAIN_ID.get(int(v), 255)
                for v in label_map.ravel()]
    assert train_map.ravel().tolist() == expected
    # wider integer types are accepted when their values fit
    assert (cl.label_ids_to_train_ids(label_map.astype(np.int32))
            == train_map).all()


def test_train_ids_round_trip_through_label_ids():
    train_ids = np.array(list(range(19)) + [255], np.uint8)
    label_ids = cl.train_ids_to_label_ids(train_ids)
    assert label_ids[0] == 7 and label_ids[13] == 26 and label_ids[-1] == 0
    assert (cl.label_ids_to_train_ids(label_ids) == train_ids).all()


def test_invalid_label_maps_are_rejected():
    with pytest.raises(ValueError, match='0..255'):
        cl.label_ids_to_train_ids(np.array([3, 300]))
    with pytest.raises(TypeError, match='integers'):
        cl.label_ids_to_train_ids(np.array([1.5]))


def test_colorize_uses_the_palette():
    picture = cl.colorize_train_ids(np.array([[0, 10, 255]], np.uint8))
    assert picture.tolist() == [[list(cl.PALETTE[0]), list(cl.PALETTE[10]),
                                 [0, 0, 0]]]
