import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

TOOL = str(Path(__file__).resolve().parents[2] / 'tools' /
           'dataset_converters' / 'voc_aug.py')


def test_builds_aug_labels_and_split(python, tmp_path):
    from scipy.io import savemat
    voc = tmp_path / 'VOCdevkit' / 'VOC2012'
    sbd = tmp_path / 'SBD' / 'benchmark_RELEASE' / 'dataset'
    splits = voc / 'ImageSets' / 'Segmentation'
    for folder in (splits, voc / 'SegmentationClass', sbd / 'cls'):
        folder.mkdir(parents=True)
    (splits / 'train.txt').write_text('a\n')
    (splits / 'val.txt').write_text('v\n')
    (sbd / 'train.txt').write_text('a\nb\nv\n')
    (sbd / 'val.txt').write_text('c\n')
    voc_label = np.full((4, 5), 7, np.uint8)
    for name in ('a', 'v'):
        image = Image.fromarray(voc_label, mode='P')
        image.putpalette([0, 0, 0] * 256)
        image.save(voc / 'SegmentationClass' / f'{name}.png')
    for index, name in enumerate(('b', 'c')):
        savemat(sbd / 'cls' / f'{name}.mat', {'GTcls': {
            'Segmentation': np.full((3, 3), index + 1, np.uint8)}})
    result = subprocess.run([python, TOOL, str(tmp_path / 'VOCdevkit'),
                             str(tmp_path / 'SBD'), '--nproc', '1'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (splits / 'aug.txt').read_text().split() == ['a', 'b', 'c']
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
