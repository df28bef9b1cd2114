"""PseudoLabelDataset and the pixel-weight transforms."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from tiny_uda import write_tiny_uda_data
from PIL import Image

from mmseg_saot.datasets import PseudoLabelDataset
from mmseg_saot.datasets.pseudo_label_cache import PseudoLabelCache
from mmseg_saot.utils.errors import UserInputError

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='LoadPixelWeights'),
            dict(type='RandomResize', scale=(84, 56), ratio_range=(1.5, 1.5), keep_ratio=True),
            dict(type='RandomCrop', crop_size=(42, 42)), dict(type='RandomFlip', prob=1.0),
            dict(type='PackSegInputsWithWeights')]


def target_cfg(root):
    return dict(type='CityscapesDataset', data_root=str(root / 'cs'),
                data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
                pipeline=[])


@pytest.fixture
def dataset(tmp_path):
    root = write_tiny_uda_data(tmp_path, num_target=2)
    return PseudoLabelDataset(target_cfg(root), str(tmp_path / 'cache'), PIPELINE)


def test_samples_point_at_the_cache_and_keep_the_truth_aside(dataset, tmp_path):
    assert dataset.keys() == ['demo/demo_000000_000019_leftImg8bit',
                              'demo/demo_000001_000019_leftImg8bit']
    info = dataset.get_data_info(0)
    assert info['seg_map_path'] == str(tmp_path / 'cache' / 'labels' / (dataset.key(0) + '.png'))
    assert info['pixel_weight_path'].endswith(dataset.key(0) + '.png')
    assert info['gt_seg_map_path'].endswith('_gtFine_labelTrainIds.png')


@pytest.mark.parametrize('wrapper', ['ConcatDataset', 'RepeatDataset'])
def test_a_wrapped_target_config_builds_and_its_images_keep_their_folders(tmp_path, wrapper):
    # a wrapper config took serialize_data (TypeError), and a wrapper's keys were the file
    # names alone: two cities' 0001.png shared one pseudo-label file
    for city in ('cityA', 'cityB'):
        (tmp_path / city / 'img').mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / city / 'img' / '0001.png')
    leaves = [dict(type='BaseSegDataset', data_root=str(tmp_path / city),
                   data_prefix=dict(img_path='img'), img_suffix='.png',
                   metainfo=dict(classes=('a', 'b')), pipeline=[]) for city in ('cityA', 'cityB')]
    config = (dict(type='ConcatDataset', datasets=leaves) if wrapper == 'ConcatDataset' else
              dict(type='RepeatDataset', dataset=dict(type='ConcatDataset', datasets=leaves),
                   times=2))
    dataset = PseudoLabelDataset(config, str(tmp_path / 'cache'))
    keys = ['cityA/img/0001', 'cityB/img/0001']
    assert dataset.keys() == (keys if wrapper == 'ConcatDataset' else keys * 2)
    # a plain dataset keeps its keys: relative to its image folder
    plain = PseudoLabelDataset(leaves[0], str(tmp_path / 'cache'))
    assert plain.keys() == ['0001']


def test_images_that_differ_only_in_extension_get_their_own_cache_files(tmp_path):
    # x.png and x.jpg (two datasets of one folder, by img_suffix) shared the key 'x':
    # the second image's pseudo-label overwrote the first's
    (tmp_path / 'img').mkdir()
    for suffix in ('.png', '.jpg', '.bmp'):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img' / f'x{suffix}')
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img' / 'y.png')
    leaves = [dict(type='BaseSegDataset', data_root=str(tmp_path), data_prefix=dict(
        img_path='img'), img_suffix=suffix, metainfo=dict(classes=('a', 'b')), pipeline=[])
              for suffix in ('.png', '.jpg')]
    dataset = PseudoLabelDataset(dict(type='ConcatDataset', datasets=leaves),
                                 str(tmp_path / 'cache'))
    # only the colliding names keep their extension; y keeps the usual key
    assert dataset.keys() == ['x.png', 'y', 'x.jpg']
    assert len({dataset.get_data_info(i)['seg_map_path'] for i in range(3)}) == 3
    # the same image twice (a RepeatDataset) is one key, as before
    repeated = PseudoLabelDataset(dict(type='RepeatDataset', dataset=leaves[1], times=2),
                                  str(tmp_path / 'cache'))
    assert repeated.keys() == ['x', 'x']


def test_a_missing_pseudo_label_names_the_image_and_the_fix(dataset):
    with pytest.raises(UserInputError, match='generate_pseudo_labels.py'):
        dataset[0]


def test_weights_move_with_the_labels_through_resize_crop_and_flip(dataset):
    # labels encode their column, weights encode the same column: after the
    # geometric transforms they must still agree pixel by pixel
    cache = PseudoLabelCache(dataset.pseudo_label_dir)
    columns = np.tile((np.arange(84) % 19).astype(np.uint8), (56, 1))
    for key in dataset.keys():
        cache.write(key, columns, (columns * 10).astype(np.uint8))
    sample = dataset[0]['data_samples']
    labels = sample.gt_sem_seg.data[0]
    weights = sample.gt_pixel_weight.data[0]
    assert labels.shape == weights.shape == (42, 42)
    torch.testing.assert_close(weights, labels.float() * 10 / 255)


def test_work_dir_placeholder_must_be_filled(tmp_path):
    root = write_tiny_uda_data(tmp_path, num_target=1)
    with pytest.raises(UserInputError, match='tools/train.py'):
        PseudoLabelDataset(target_cfg(root), '{work_dir}/pseudo_labels', PIPELINE)


def test_weight_and_label_of_different_sizes_are_named(dataset):
    cache = PseudoLabelCache(dataset.pseudo_label_dir)
    cache.write(dataset.key(0), np.zeros((56, 84), np.uint8), np.zeros((56, 84), np.uint8))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(cache.confidence_path(dataset.key(0)))
    with pytest.raises(ValueError, match='confidence'):
        dataset[0]


def test_weights_loaded_before_the_labels_are_checked_when_packed(dataset):
    # LoadPixelWeights compares sizes only when the label map is already loaded
    cache = PseudoLabelCache(dataset.pseudo_label_dir)
    cache.write(dataset.key(0), np.zeros((56, 84), np.uint8), np.zeros((56, 84), np.uint8))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(cache.confidence_path(dataset.key(0)))
    dataset.pipeline = Compose([dict(type='LoadImageFromFile'), dict(type='LoadPixelWeights'),
                                dict(type='LoadAnnotations'),
                                dict(type='PackSegInputsWithWeights')])
    with pytest.raises(ValueError, match=r'confidence/.*\.png is \(10, 10\) but its label '
                       r'map .*labels/.*\.png is \(56, 84\)'):
        dataset[0]


def test_a_cache_folder_that_cannot_be_made_is_named(tmp_path):
    root = write_tiny_uda_data(tmp_path, num_target=1)
    afile = tmp_path / 'afile'
    afile.write_text('')
    with pytest.raises(UserInputError, match=r'^the pseudo-label cache: '
                       f'cannot create the folder {afile}/pl'):
        PseudoLabelCache(str(afile / 'pl')).open(dict(method='saot'))
    dataset = PseudoLabelDataset(target_cfg(root), str(afile / 'pl'), PIPELINE)
    with pytest.raises(UserInputError, match=r'^PseudoLabelDataset pseudo_label_dir \(in the '
                       r'shipped configs train_dataloader\.dataset\.target\.pseudo_label_dir\): '
                       f'cannot create the folder {afile}/pl'):
        dataset.cache.open(dict(method='saot'))


def test_an_unreadable_cache_file_is_named_with_the_fix(dataset):
    cache = PseudoLabelCache(dataset.pseudo_label_dir)
    for key in dataset.keys():
        cache.write(key, np.zeros((56, 84), np.uint8), np.full((56, 84), 255, np.uint8))
    info = dataset.get_data_info(0)
    with open(info['pixel_weight_path'], 'wb') as f:
        f.write(b'half a png')
    with pytest.raises(UserInputError) as error:
        dataset[0]
    message = str(error.value)
    assert message.startswith(f'PseudoLabelDataset: the pseudo-label cache file '
                              f'{info["pixel_weight_path"]} of {info["img_path"]} cannot be '
                              'read (UnidentifiedImageError: ')
    assert message.endswith(f'Delete {info["seg_map_path"]} and {info["pixel_weight_path"]} '
                            'and run the same command again: SAOTPseudoLabelHook labels the '
                            'missing image again.')
    assert dataset[1]['data_samples'].gt_pixel_weight.data.shape[-2:] == (42, 42)
