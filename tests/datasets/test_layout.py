import os.path as osp
import re

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
        (root / 'labels' / '00001_labelTrainIds.png').write_bytes(b'')


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
    with pytest.raises(DataLayoutError, match='GTA5Dataset') as info:
        GTA5Dataset(data_root=str(tmp_path / 'nowhere'),
                    data_prefix=dict(img_path='images',
                                     seg_map_path='labels'))
    # its advice is for the root it was given (it named data/gta5, and told to set the
    # data_root that was set)
    assert f'download GTA5 (images + labels) into {tmp_path / "nowhere"}' in str(info.value)
    with pytest.raises(DataLayoutError, match='make demo-data'):
        GTA5Dataset(data_root=str(tmp_path / 'demo' / 'gta5'),
                    data_prefix=dict(img_path='images', seg_map_path='labels'))


def test_dataset_class_loads_a_relative_root(tmp_path, monkeypatch):
    # MMEngine joins data_prefix to data_root before load_data_list; the check
    # must not join it a second time ("root/root/images").
    make_gta5(tmp_path / 'gta5')
    monkeypatch.chdir(tmp_path)
    dataset = GTA5Dataset(data_root='gta5',
                          data_prefix=dict(img_path='images',
                                           seg_map_path='labels'),
                          lazy_init=False)
    assert len(dataset) == 1
    assert dataset.get_data_info(0)["img_path"] == osp.join("gta5", "images", "00001.png")


def uda_config(root, target_pipeline) -> Config:
    cs = dict(type='CityscapesDataset', data_root=str(root / 'cs'), pipeline=target_pipeline,
              data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'))
    return Config(dict(train_dataloader=dict(dataset=dict(
        type='SourceTargetDataset',
        source=dict(type='GTA5Dataset', data_root=str(root / 'gta5'),
                    data_prefix=dict(img_path='images', seg_map_path='labels'),
                    pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]),
        target=dict(type='PseudoLabelDataset', dataset=cs, pseudo_label_dir='pl')))))


def make_unlabelled_cityscapes(root):
    images = root / 'cs' / 'leftImg8bit' / 'train' / 'city'
    images.mkdir(parents=True)
    (images / 'a_leftImg8bit.png').write_bytes(b'')


def test_target_images_need_no_labels_where_nothing_reads_them(tmp_path):
    make_gta5(tmp_path / 'gta5')
    make_unlabelled_cityscapes(tmp_path)
    check_data_layout(uda_config(tmp_path, [dict(type='LoadImageFromFile')]))
    with pytest.raises(DataLayoutError) as info:  # a pipeline that reads them needs them
        check_data_layout(uda_config(tmp_path, [dict(type='LoadImageFromFile'),
                                                dict(type='mmseg.LoadAnnotations')]))
    message = str(info.value)
    assert message.startswith('CityscapesDataset (train_dataloader.dataset.target.dataset): '
                              f'folder "{tmp_path}/cs/gtFine/train" (seg_map_path) does not '
                              'exist.')
    assert message.endswith('--cfg-options train_dataloader.dataset.target.dataset.data_root='
                            '/my/data')


def test_a_test_set_without_labels_passes_and_errors_name_the_key(tmp_path):
    make_unlabelled_cityscapes(tmp_path)
    test_set = dict(type='CityscapesDataset', data_root=str(tmp_path / 'cs'),
                    data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/x'),
                    pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')])
    check_data_layout(Config(dict(test_dataloader=dict(dataset=test_set))))
    hooks = [dict(type='EMATeacherHook'),
             dict(type='SAOTPseudoLabelHook', source=dict(
                 type='GTA5Dataset', data_root=str(tmp_path / 'none'),
                 data_prefix=dict(img_path='images', seg_map_path='labels')))]
    with pytest.raises(DataLayoutError, match=r'^GTA5Dataset \(custom_hooks\.1\.source\): '
                       'dataset root'):
        check_data_layout(Config(dict(custom_hooks=hooks, train_dataloader=None)))


def test_every_missing_dataset_is_listed_at_once(tmp_path):
    cfg = uda_config(tmp_path / 'nowhere', [dict(type='LoadImageFromFile')])
    cfg.merge_from_dict(dict(val_dataloader=dict(dataset=dict(
        type='CityscapesDataset', data_root=str(tmp_path / 'val'),
        data_prefix=dict(img_path='leftImg8bit/val')))))
    with pytest.raises(DataLayoutError) as info:
        check_data_layout(cfg)
    keys = [line.split(':')[0] for line in str(info.value).split('\n\n')]
    assert keys == ['GTA5Dataset (train_dataloader.dataset.source)',
                    'CityscapesDataset (train_dataloader.dataset.target.dataset)',
                    'CityscapesDataset (val_dataloader.dataset)']


def test_a_relative_root_is_said_to_be_under_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataLayoutError, match=f'dataset root "data/gta5" \\(under the current '
                       f'folder {tmp_path}\\) does not exist'):
        check_data_layout(gta5_config('data/gta5'))


@pytest.mark.parametrize('text, message', [
    ('', 'val.txt" lists no image (it is empty)'),
    ('\n \n', 'val.txt" lists no image (it is empty)'),
    ('img0\n\nimg1\n', 'val.txt" has blank lines (2), which MMSeg reads as images named ""'),
    # a blank line at the end is read as one too (it was said to be harmless)
    ('img0\nimg1\n\n', 'val.txt" has blank lines (3), which MMSeg reads as images named ""'),
    ('\ufeffimg0\nimg1\n', 'val.txt" starts with a byte order mark, which MMSeg reads as '
     'part of the first name; save it as UTF-8 without BOM'),
])
def test_an_empty_split_file_or_one_with_blank_lines_is_named(tmp_path, text, message):
    (tmp_path / 'JPEGImages').mkdir()
    split = tmp_path / 'ImageSets' / 'Segmentation' / 'val.txt'
    split.parent.mkdir(parents=True)
    split.write_text(text)
    cfg = Config(dict(val_dataloader=dict(dataset=dict(
        type='PascalVOCDataset', data_root=str(tmp_path),
        data_prefix=dict(img_path='JPEGImages'),
        ann_file='ImageSets/Segmentation/val.txt'))))
    with pytest.raises(DataLayoutError, match=re.escape(message)):
        check_data_layout(cfg)
    split.write_text('img0\nimg1\n')  # one newline at the end is no blank line
    check_data_layout(cfg)


def test_a_folder_named_by_two_entries_is_pointed_elsewhere_in_both(tmp_path):
    source = dict(type='GTA5Dataset', data_root=str(tmp_path / 'gta5'),
                  data_prefix=dict(img_path='images', seg_map_path='labels'))
    cfg = Config(dict(train_dataloader=dict(dataset=dict(source=source, target=dict(
        type='CityscapesDataset', data_root=str(tmp_path), data_prefix=dict(img_path='.'),
        pipeline=[]))), custom_hooks=[dict(type='SAOTPseudoLabelHook', source=source)]))
    (tmp_path / 'x_leftImg8bit.png').write_bytes(b'')  # the target is there
    with pytest.raises(DataLayoutError) as info:
        check_data_layout(cfg)
    message = str(info.value)
    assert '\n\n' not in message  # one dataset missing
    assert message.startswith('GTA5Dataset (train_dataloader.dataset.source, '
                              'custom_hooks.0.source): dataset root')
    assert message.endswith('--cfg-options train_dataloader.dataset.source.data_root=/my/data '
                            'custom_hooks.0.source.data_root=/my/data')


def test_a_transform_inside_test_time_augmentation_is_found():
    from mmseg_saot.datasets.layout import loads_labels, pipeline_step
    tta = [dict(type='LoadImageFromFile'),
           dict(type='TestTimeAug', transforms=[[dict(type='Resize', scale_factor=1.0)],
                                                [dict(type='LoadAnnotations')],
                                                [dict(type='PackSegInputs')]])]
    assert loads_labels(dict(pipeline=tta))
    assert pipeline_step(dict(pipeline=tta), 'LoadAnnotations') == dict(type='LoadAnnotations')
    assert not loads_labels(dict(pipeline=tta[:1]))


def test_the_layout_and_converter_are_given_for_the_root_the_config_names(tmp_path):
    root = tmp_path / 'my_gta'
    with pytest.raises(DataLayoutError) as info:
        check_data_layout(gta5_config(root))
    message = str(info.value)
    assert f'Expected layout: {root}/images/*.png and {root}/labels/*_labelTrainIds.png.' \
        in message
    assert f'`python tools/dataset_converters/gta5.py {root}`' in message
    assert 'data/gta5' not in message


def labelled_cityscapes_val(root, label_suffix: str, seg_map_path='gtFine/val') -> Config:
    for folder, name in (('leftImg8bit', 'a_leftImg8bit.png'), ('gtFine', f'a{label_suffix}')):
        (root / folder / 'val' / 'city').mkdir(parents=True, exist_ok=True)
        (root / folder / 'val' / 'city' / name).write_bytes(b'')
    return Config(dict(val_dataloader=dict(dataset=dict(
        type='CityscapesDataset', data_root=str(root),
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path=seg_map_path),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]))))


def test_labels_not_converted_yet_are_named_with_the_converter(tmp_path):
    cfg = labelled_cityscapes_val(tmp_path / 'cs', '_gtFine_labelIds.png')
    with pytest.raises(DataLayoutError) as info:
        check_data_layout(cfg)
    message = str(info.value)
    assert message.startswith(
        'CityscapesDataset (val_dataloader.dataset): no "*_gtFine_labelTrainIds.png" label '
        f'map under "{tmp_path}/cs/gtFine/val" (labels not converted yet?).')
    assert 'tools/dataset_converters/cityscapes.py' in message
    # converted elsewhere (cityscapes.py --out-dir): an absolute seg_map_path is read as is
    out = tmp_path / 'out' / 'val' / 'city'
    out.mkdir(parents=True)
    (out / 'a_gtFine_labelTrainIds.png').write_bytes(b'')
    check_data_layout(labelled_cityscapes_val(tmp_path / 'cs', '_gtFine_labelIds.png',
                                              seg_map_path=str(tmp_path / 'out' / 'val')))


def test_a_gta5_label_folder_without_converted_labels_is_refused(tmp_path):
    make_gta5(tmp_path)
    (tmp_path / 'labels' / '00001_labelTrainIds.png').rename(tmp_path / 'labels' / '00001.png')
    with pytest.raises(DataLayoutError, match=r'no "\*_labelTrainIds.png" label map under'):
        check_data_layout(gta5_config(tmp_path))
    with pytest.raises(DataLayoutError, match=r'no "\*_labelTrainIds.png" label map under'):
        GTA5Dataset(data_root=str(tmp_path),
                    data_prefix=dict(img_path='images', seg_map_path='labels'))


def test_image_folders_reached_through_symlinks_are_searched(tmp_path):
    # os.walk does not enter a symlinked folder: a Cityscapes tree of linked cities
    # was said to hold no image, though MMSeg lists them
    real = tmp_path / 'real' / 'aachen'
    real.mkdir(parents=True)
    (real / 'a_leftImg8bit.png').write_bytes(b'')
    (tmp_path / 'cs' / 'leftImg8bit' / 'train').mkdir(parents=True)
    (tmp_path / 'cs' / 'leftImg8bit' / 'train' / 'aachen').symlink_to(real)
    check_data_layout(Config(dict(train_dataloader=dict(dataset=dict(
        type='CityscapesDataset', data_root=str(tmp_path / 'cs'),
        data_prefix=dict(img_path='leftImg8bit/train'), pipeline=[])))))


def test_types_given_as_classes_are_checked_as_their_names(tmp_path):
    # a pure-Python config's type is the class: "<class ...>" matched no step or
    # dataset, so a missing label folder passed
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import LoadAnnotations
    (tmp_path / 'images').mkdir()
    (tmp_path / 'images' / '00001.png').write_bytes(b'')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type=GTA5Dataset, data_root=str(tmp_path),
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        pipeline=[dict(type=LoadImageFromFile), dict(type=LoadAnnotations)]))))
    with pytest.raises(DataLayoutError, match='labels.*seg_map_path'):
        check_data_layout(cfg)


def test_pseudo_label_folders_are_found_inside_wrappers():
    from mmseg_saot.datasets.layout import pseudo_label_dirs
    target = dict(type='PseudoLabelDataset', pseudo_label_dir='/p', dataset=dict(type='X'))
    wrapped = dict(type='ConcatDataset', datasets=[
        dict(type='X'), dict(type='SourceTargetDataset', source=dict(type='X'), target=target)])
    assert list(pseudo_label_dirs(wrapped, 'd')) == [
        ('d.datasets.1.target.pseudo_label_dir', '/p')]
    assert list(pseudo_label_dirs(dict(type='X'), 'd')) == []


def test_the_preparation_advice_follows_the_given_root(tmp_path):
    from mmseg_saot.datasets.layout import _advice
    # a root under a user called demo is no demo data: it was told to run make demo-data
    advice = _advice('GTA5Dataset', '/home/demo/data/gta5', [])
    assert 'make demo-data' not in advice
    assert '`python tools/dataset_converters/gta5.py /home/demo/data/gta5`' in advice
    # VOC: the devkit above the given VOC2012 root, not data/VOCdevkit
    advice = _advice('PascalVOCDataset', '/mnt/voc/VOC2012', [])
    assert 'extract VOCtrainval_11-May-2012 into /mnt/voc and SBD into /mnt/voc/VOCaug' in advice
    assert 'voc_aug.py /mnt/voc /mnt/voc/VOCaug`' in advice and 'data/VOCdevkit' not in advice
