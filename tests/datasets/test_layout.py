import os.path as osp

import pytest
from mmengine import Config

from mmseg_saot.datasets import DataLayoutError, GTA5Dataset, check_data_layout


def gta5_config(root) -> Config:
    return Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[dict(
            type='GTA5Dataset', data_root=str(root),
            data_prefix=dict(img_path='images', seg_map_path='labels'))]))))


def make_gta5(root, with_image=True):
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    if with_image:
        (root / 'images' / '00001.png').write_bytes(b'')


def test_missing_root_names_layout_and_converter(tmp_path):
    with pytest.raises(DataLayoutError) as info:
        check_data_layout(gta5_config(tmp_path / 'gta5'))
    message = str(info.value)
    assert 'gta5" does not exist' in message
    assert 'images/*.png' in message
    assert 'tools/dataset_converters/gta5.py' in message


def test_missing_label_folder(tmp_path):
    (tmp_path / 'images').mkdir()
    with pytest.raises(DataLayoutError, match='labels.*seg_map_path'):
        check_data_layout(gta5_config(tmp_path))


def test_empty_image_folder(tmp_path):
    make_gta5(tmp_path, with_image=False)
    with pytest.raises(DataLayoutError, match=r'no "\*.png" image'):
        check_data_layout(gta5_config(tmp_path))


def test_valid_layout_passes(tmp_path):
    make_gta5(tmp_path)
    check_data_layout(gta5_config(tmp_path))


def test_demo_roots_point_at_make_demo_data(tmp_path):
    with pytest.raises(DataLayoutError, match='make demo-data'):
        check_data_layout(gta5_config(tmp_path / 'demo' / 'gta5'))


def test_missing_split_file(tmp_path):
    (tmp_path / 'JPEGImages').mkdir()
    cfg = Config(dict(val_dataloader=dict(dataset=dict(
        type='PascalVOCDataset', data_root=str(tmp_path),
        data_prefix=dict(img_path='JPEGImages'),
        ann_file='ImageSets/Segmentation/val.txt'))))
    with pytest.raises(DataLayoutError, match='val.txt" does not exist'):
        check_data_layout(cfg)


def test_dataset_class_raises_the_same_error(tmp_path):
    with pytest.raises(DataLayoutError, match='GTA5Dataset'):
        GTA5Dataset(data_root=str(tmp_path / 'nowhere'),
                    data_prefix=dict(img_path='images',
                                     seg_map_path='labels'))


def test_dataset_class_loads_a_relative_root(tmp_path, monkeypatch):
    # MMEngine joins data_prefix to data_root before load_data_list; the check
    # must not join it a second time ("root/root/images").
    make_gta5(tmp_path / 'gta5')
    (tmp_path / 'gta5' / 'labels' / '00001_labelTrainIds.png').write_bytes(b'')
    monkeypatch.chdir(tmp_path)
    dataset = GTA5Dataset(data_root='gta5',
                          data_prefix=dict(img_path='images',
                                           seg_map_path='labels'),
                          lazy_init=False)
    assert len(dataset) == 1
    assert dataset.get_data_info(0)["img_path"] == osp.join("gta5", "images", "00001.png")
