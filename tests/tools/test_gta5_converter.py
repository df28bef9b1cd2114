"""tools/dataset_converters/gta5.py on a tiny GTA5 tree of paletted labels."""
import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from tool_scripts import load_tool
from PIL import Image

from mmseg_saot.datasets.cityscapes_labels import LABELS

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'dataset_converters' / \
    'gta5.py'
H, W = 6, 8
# (label id, train id) pairs: train classes and several void labels
PAIRS = [(7, 0), (8, 1), (11, 2), (17, 5), (21, 8), (23, 10), (24, 11),
         (26, 13), (33, 18), (0, 255), (1, 255), (6, 255), (9, 255),
         (14, 255), (18, 255), (29, 255), (34, 255), (200, 255)]


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


def write_paletted(path, label_ids):
    """A GTA5-style label: palette indices are label ids, colours differ."""
    image = Image.fromarray(label_ids.astype(np.uint8))
    palette = np.zeros((256, 3), np.uint8)
    for _, label_id, _, color in LABELS:
        if label_id >= 0:
            palette[label_id] = color
    image.putpalette(palette.ravel().tolist())
    assert image.mode == 'P'
    image.save(path)


@pytest.fixture
def gta5_root(tmp_path):
    root = tmp_path / 'gta5'
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    rng = np.random.default_rng(0)
    for name in ('00001', '00002'):
        ids = np.array([p[0] for p in PAIRS])[rng.integers(0, len(PAIRS),
                                                           (H, W))]
        write_paletted(root / 'labels' / f'{name}.png', ids)
        cv2.imwrite(str(root / 'images' / f'{name}.png'),
                    np.zeros((H, W, 3), np.uint8))
    return root


def expected_train_ids(label_file):
    ids = np.array(Image.open(label_file))   # indices of a 'P' image
    lut = dict(PAIRS)
    return np.vectorize(lut.__getitem__)(ids).astype(np.uint8)


def run(tool, *args):
    return tool.main([str(a) for a in args] + ['--nproc', '1'])


def test_paletted_label_ids_become_train_ids(tool, gta5_root, capsys):
    assert run(tool, gta5_root) == 0
    for name in ('00001', '00002'):
        out = gta5_root / 'labels' / f'{name}_labelTrainIds.png'
        train_ids = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert train_ids.dtype == np.uint8 and train_ids.shape == (H, W)
        assert (train_ids == expected_train_ids(
            gta5_root / 'labels' / f'{name}.png')).all()
    summary = capsys.readouterr().out
    assert 'road' in summary and '2 converted' in summary


def test_class_stats_sum_to_the_pixels(tool, gta5_root):
    assert run(tool, gta5_root) == 0
    records = json.loads((gta5_root / 'sample_class_stats.json').read_text())
    assert [r['file'] for r in records] == [
        'labels/00001_labelTrainIds.png', 'labels/00002_labelTrainIds.png']
    for record in records:
        assert sum(record['counts'].values()) == H * W
        train_ids = cv2.imread(str(gta5_root / record['file']),
                               cv2.IMREAD_UNCHANGED)
        for key, count in record['counts'].items():
            assert (train_ids == int(key)).sum() == count


def test_existing_files_are_skipped_unless_forced(tool, gta5_root, capsys):
    assert run(tool, gta5_root) == 0
    out = gta5_root / 'labels' / '00001_labelTrainIds.png'
    stats = (gta5_root / 'sample_class_stats.json').read_text()
    cv2.imwrite(str(out), np.full((H, W), 3, np.uint8))   # a marker
    capsys.readouterr()
    assert run(tool, gta5_root) == 0
    assert '0 converted, 2 already done' in capsys.readouterr().out
    assert (cv2.imread(str(out), cv2.IMREAD_UNCHANGED) == 3).all()
    # the stats follow the file the sampler reads: the changed one is counted again
    records = json.loads((gta5_root / 'sample_class_stats.json').read_text())
    assert records[0]['counts'] == {'3': H * W}
    assert records[1:] == json.loads(stats)[1:]
    # counts are reused (not read again) while the stats are no older than the file
    cv2.imwrite(str(out), np.full((H, W), 5, np.uint8))
    label_time = os.stat(gta5_root / 'labels' / '00001.png').st_mtime_ns
    os.utime(out, ns=(label_time, label_time))  # still up to date, older than the stats
    assert run(tool, gta5_root) == 0
    assert json.loads((gta5_root / 'sample_class_stats.json').read_text()) == records
    assert run(tool, gta5_root, '--force') == 0
    assert '2 converted' in capsys.readouterr().out
    assert (cv2.imread(str(out), cv2.IMREAD_UNCHANGED) == expected_train_ids(
        gta5_root / 'labels' / '00001.png')).all()
    # a converted file missing from the stats is counted, not converted
    (gta5_root / 'sample_class_stats.json').unlink()
    assert run(tool, gta5_root) == 0
    assert '0 converted' in capsys.readouterr().out
    assert len(json.loads(
        (gta5_root / 'sample_class_stats.json').read_text())) == 2


def test_corrupt_label_is_named(tool, gta5_root, capsys):
    (gta5_root / 'labels' / '00002.png').write_bytes(b'not a png')
    assert run(tool, gta5_root) == 2
    err = capsys.readouterr().err
    assert 'error:' in err and '00002.png' in err


def test_rgb_label_is_refused(tool, gta5_root, capsys):
    Image.new('RGB', (W, H)).save(gta5_root / 'labels' / '00002.png')
    assert run(tool, gta5_root) == 2
    assert 'RGB image' in capsys.readouterr().err


@pytest.mark.parametrize('make', ['nothing', 'root only'])
def test_missing_folder_is_a_clear_cli_error(python, tmp_path, make):
    root = tmp_path / 'gta5'
    if make == 'root only':
        (root / 'images').mkdir(parents=True)
    result = subprocess.run([python, str(TOOL), str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'GTA5_ROOT/images/*.png, GTA5_ROOT/labels/*.png' in result.stderr
    assert 'Traceback' not in result.stdout + result.stderr


def test_cli_with_worker_processes(python, gta5_root):
    result = subprocess.run(
        [python, str(TOOL), str(gta5_root), '--nproc', '2'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (gta5_root / 'labels' / '00002_labelTrainIds.png').is_file()
    assert 'class stats of 2 images' in result.stdout


def test_a_file_root_and_converted_only_labels_are_named(tool, tmp_path):
    afile = tmp_path / 'afile'
    afile.write_text('')
    with pytest.raises(tool.LayoutError, match=f'GTA5 root {afile} is a file, not a folder'):
        tool.check_layout(afile)
    labels = tmp_path / 'gta5' / 'labels'
    labels.mkdir(parents=True)
    (labels / f'00001{tool.TRAIN_ID_SUFFIX}').write_bytes(b'')
    with pytest.raises(tool.LayoutError, match='holds no label-id PNGs to convert \\(only '
                       'converted'):
        tool.check_layout(tmp_path / 'gta5')


def test_out_dir_gets_the_labels_and_the_class_stats(tool, gta5_root, tmp_path, capsys):
    out = tmp_path / 'converted'
    out.mkdir()   # an existing folder is fine
    assert run(tool, gta5_root, '--out-dir', out) == 0
    assert f'in {out / "sample_class_stats.json"}' in capsys.readouterr().out
    assert not (gta5_root / 'sample_class_stats.json').exists()
    assert not list((gta5_root / 'labels').glob('*_labelTrainIds.png'))
    records = json.loads((out / 'sample_class_stats.json').read_text())
    # relative to the stats file's folder, where ClassBalancedSampler looks
    assert [r['file'] for r in records] == ['00001_labelTrainIds.png',
                                            '00002_labelTrainIds.png']
    assert all((out / r['file']).is_file() for r in records)


def test_an_out_dir_that_is_a_file_is_named(tool, gta5_root, tmp_path, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('kept')
    assert run(tool, gta5_root, '--out-dir', afile) == 2
    assert capsys.readouterr().err.strip() == (
        f'error: --out-dir: {afile} exists and is not a folder; pick another path.')
    assert afile.read_text() == 'kept'


def test_an_output_older_than_its_label_is_converted_again(tool, gta5_root, capsys):
    assert run(tool, gta5_root) == 0
    out = gta5_root / 'labels' / '00001_labelTrainIds.png'
    cv2.imwrite(str(out), np.full((H, W), 3, np.uint8))   # a marker
    old = os.stat(gta5_root / 'labels' / '00001.png').st_mtime - 10
    os.utime(out, (old, old))
    capsys.readouterr()
    assert run(tool, gta5_root) == 0
    assert '1 converted, 1 already done' in capsys.readouterr().out
    expected = expected_train_ids(gta5_root / 'labels' / '00001.png')
    assert (cv2.imread(str(out), cv2.IMREAD_UNCHANGED) == expected).all()
    record = json.loads((gta5_root / 'sample_class_stats.json').read_text())[0]
    assert record['counts'] == {str(v): int((expected == v).sum())
                                for v in np.unique(expected)}


@pytest.mark.parametrize('force', [False, True])
def test_a_stats_file_of_another_tool_is_left_alone_and_named(tool, gta5_root, capsys,
                                                              force):
    # DAFormer writes a flat format under the same name; it was replaced without a word
    foreign = '[{"file": "labels/00000_labelTrainIds.png", "7": 100, "13": 20}]'
    (gta5_root / 'sample_class_stats.json').write_text(foreign)
    assert run(tool, gta5_root, *(['--force'] if force else [])) == 2
    err = capsys.readouterr().err
    assert f'error: {gta5_root}/sample_class_stats.json is not a class-stats file' in err
    assert 'move it away and run again, or write the labels and statistics elsewhere ' \
        'with --out-dir DIR' in err
    assert (gta5_root / 'sample_class_stats.json').read_text() == foreign
    assert not list((gta5_root / 'labels').glob('*_labelTrainIds.png'))  # nothing converted
