import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tool_scripts import load_tool

TOOL = str(Path(__file__).resolve().parents[2] / 'tools' /
           'dataset_converters' / 'voc_aug.py')


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


def write_voc_png(path, value=7):
    image = Image.fromarray(np.full((4, 5), value, np.uint8), mode='P')
    image.putpalette([0, 0, 0] * 256)
    image.save(path)


def write_sbd_mat(path, value):
    from scipy.io import savemat
    savemat(path, {'GTcls': {'Segmentation': np.full((3, 3), value, np.uint8)}})


@pytest.fixture
def voc_tree(tmp_path):
    """VOC train a, val v (PNGs); SBD train a, b, v and val c (.mat for b, c)."""
    voc = tmp_path / 'VOCdevkit' / 'VOC2012'
    sbd = tmp_path / 'SBD' / 'benchmark_RELEASE' / 'dataset'
    splits = voc / 'ImageSets' / 'Segmentation'
    for folder in (splits, voc / 'SegmentationClass', sbd / 'cls'):
        folder.mkdir(parents=True)
    (splits / 'train.txt').write_text('a\n')
    (splits / 'val.txt').write_text('v\n')
    (sbd / 'train.txt').write_text('a\nb\nv\n')
    (sbd / 'val.txt').write_text('c\n')
    for name in ('a', 'v'):
        write_voc_png(voc / 'SegmentationClass' / f'{name}.png')
    for index, name in enumerate(('b', 'c')):
        write_sbd_mat(sbd / 'cls' / f'{name}.mat', index + 1)
    return tmp_path


def run(tool, tree, *args):
    return tool.main([str(tree / 'VOCdevkit'), str(tree / 'SBD'), '--nproc', '1',
                      *map(str, args)])


def test_builds_aug_labels_and_split(python, voc_tree):
    tmp_path = voc_tree
    voc = tmp_path / 'VOCdevkit' / 'VOC2012'
    splits = voc / 'ImageSets' / 'Segmentation'
    result = subprocess.run([python, TOOL, str(tmp_path / 'VOCdevkit'),
                             str(tmp_path / 'SBD'), '--nproc', '1'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # aug as MMSeg's converter writes it (SBD beyond VOC train and val): its
    # pascal_voc12_aug concatenates it with train.txt; it held a (VOC train) too, so
    # train images were drawn twice as often
    assert (splits / 'aug.txt').read_text().split() == ['b', 'c']
    assert (splits / 'trainaug.txt').read_text().split() == ['a', 'b', 'c']
    out = voc / 'SegmentationClassAug'
    assert (np.array(Image.open(out / 'a.png')) == 7).all()
    assert (np.array(Image.open(out / 'c.png')) == 2).all()
    assert (out / 'v.png').is_file()


def test_missing_layout_is_explained(python, tmp_path):
    result = subprocess.run([python, TOOL, str(tmp_path), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'Expected layout' in result.stderr
    assert 'Traceback' not in result.stderr


def test_nproc_below_one_is_a_usage_error(python, tmp_path):
    result = subprocess.run([python, TOOL, str(tmp_path), str(tmp_path), '--nproc', '0'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'argument --nproc: must be an integer >= 1, got "0"' in result.stderr
    assert 'Traceback' not in result.stderr


def test_rgb_voc_label_is_refused(tool, voc_tree, capsys):
    label = voc_tree / 'VOCdevkit/VOC2012/SegmentationClass/a.png'
    Image.new('RGB', (5, 4), (128, 0, 0)).save(label)   # VOC's colour for class 1
    assert run(tool, voc_tree) == 2
    err = capsys.readouterr().err
    assert f'error: label file {label} is a RGB image' in err
    assert 'paletted (P) or single-channel (L) PNG of VOC class indices' in err
    assert not (voc_tree / 'VOCdevkit/VOC2012/SegmentationClassAug/a.png').exists()


def test_names_without_a_label_are_listed(tool, voc_tree, capsys):
    sbd = voc_tree / 'SBD/benchmark_RELEASE/dataset'
    lost = [f'lost{i}' for i in range(7)]
    (sbd / 'train.txt').write_text('a\nb\nv\n' + '\n'.join(lost) + '\n')
    assert run(tool, voc_tree) == 2
    err = capsys.readouterr().err
    assert 'error: 7 of the 11 listed images have no label' in err
    assert 'lost0, lost1, lost2, lost3, lost4 and 2 more' in err
    assert not (voc_tree / 'VOCdevkit/VOC2012/SegmentationClassAug').exists()


@pytest.mark.parametrize('broken', ['c.mat', 'a.png'])
def test_an_unreadable_label_is_named(tool, voc_tree, capsys, broken):
    folder = ('SBD/benchmark_RELEASE/dataset/cls' if broken.endswith('.mat')
              else 'VOCdevkit/VOC2012/SegmentationClass')
    (voc_tree / folder / broken).write_bytes(b'truncated')
    assert run(tool, voc_tree) == 2
    err = capsys.readouterr().err
    assert 'error: cannot read ' in err and str(voc_tree / folder / broken) in err


def test_outputs_are_kept_only_while_newer_than_their_source(tool, voc_tree, capsys):
    assert run(tool, voc_tree) == 0
    out = voc_tree / 'VOCdevkit/VOC2012/SegmentationClassAug'
    for name in ('a', 'b'):
        Image.fromarray(np.full((2, 2), 9, np.uint8)).save(out / f'{name}.png')  # markers
    old = os.stat(voc_tree / 'VOCdevkit/VOC2012/SegmentationClass/a.png').st_mtime - 10
    os.utime(out / 'a.png', (old, old))   # older than its VOC PNG
    capsys.readouterr()
    assert run(tool, voc_tree) == 0
    assert '1 converted, 3 already done' in capsys.readouterr().out
    assert (np.array(Image.open(out / 'a.png')) == 7).all()   # written again
    assert (np.array(Image.open(out / 'b.png')) == 9).all()   # up to date: kept
    assert run(tool, voc_tree, '--force') == 0
    assert '4 converted, 0 already done' in capsys.readouterr().out
    assert (np.array(Image.open(out / 'b.png')) == 1).all()


def test_sbd_labels_of_another_converter_are_replaced_where_a_voc_png_exists(tool, voc_tree,
                                                                            capsys):
    # MMSeg's voc_aug.py writes every SBD name from its .mat, VOC train/val names too:
    # newer than the VOC PNGs, they were kept, and lost VOC's 255 boundaries
    out = voc_tree / 'VOCdevkit/VOC2012/SegmentationClassAug'
    out.mkdir()
    for name in ('a', 'v', 'b'):  # a, v: VOC PNGs (7); b: SBD only (1)
        Image.fromarray(np.full((3, 3), 9, np.uint8)).save(out / f'{name}.png')
    assert run(tool, voc_tree) == 0
    assert '4 converted, 0 already done' in capsys.readouterr().out
    assert (np.array(Image.open(out / 'a.png')) == 7).all()
    assert (np.array(Image.open(out / 'v.png')) == 7).all()
    assert (np.array(Image.open(out / 'b.png')) == 1).all()
    assert run(tool, voc_tree) == 0  # its own outputs, recorded: kept
    assert '0 converted, 4 already done' in capsys.readouterr().out
