"""tools/dataset_converters/cityscapes.py on a tiny tree of polygon JSONs
(rendered by cityscapesscripts' json2labelImg)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from tool_scripts import load_tool

pytest.importorskip('cityscapesscripts.preparation.json2labelImg')

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'dataset_converters' / \
    'cityscapes.py'
H, W = 20, 32
ROAD, CAR, IGNORE = 0, 13, 255   # train ids
STEM = 'aachen_000000_000019'
# road over the bottom half, a car on it; a licence plate (label id -1) on
# the car is not drawn, 'cargroup' is drawn as car
OBJECTS = [
    dict(label='road', polygon=[[0, 10], [31, 10], [31, 19], [0, 19]]),
    dict(label='car', polygon=[[4, 12], [12, 12], [12, 17], [4, 17]]),
    dict(label='license plate', polygon=[[6, 14], [10, 14], [10, 16],
                                         [6, 16]]),
    dict(label='cargroup', polygon=[[20, 13], [26, 13], [26, 17], [20, 17]]),
]


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


def write_polygons(path, objects):
    path.write_text(json.dumps(dict(imgHeight=H, imgWidth=W,
                                    objects=objects)))


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / 'cityscapes'
    for folder in ('leftImg8bit', 'gtFine'):
        for split in ('train', 'val'):
            (root / folder / split / 'aachen').mkdir(parents=True)
    gt = root / 'gtFine' / 'train' / 'aachen'
    write_polygons(gt / f'{STEM}_gtFine_polygons.json', OBJECTS)
    cv2.imwrite(str(root / 'leftImg8bit' / 'train' / 'aachen' /
                    f'{STEM}_leftImg8bit.png'), np.zeros((H, W, 3), np.uint8))
    return root


def train_ids_of(root):
    path = root / 'gtFine' / 'train' / 'aachen' / \
        f'{STEM}_gtFine_labelTrainIds.png'
    train_ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert train_ids is not None, f'{path} was not written'
    return train_ids


def train_ids_path(annotation):
    return annotation.with_name(annotation.name.replace('_gtFine_polygons.json',
                                                        '_gtFine_labelTrainIds.png'))


def run(tool, *args):
    return tool.main([str(a) for a in args] + ['--nproc', '1'])


def test_polygons_become_train_ids(tool, cityscapes_root, capsys):
    assert run(tool, cityscapes_root, '--class-stats') == 0
    assert '1 converted, 0 already done' in capsys.readouterr().out
    train_ids = train_ids_of(cityscapes_root)
    assert train_ids.dtype == np.uint8 and train_ids.shape == (H, W)
    assert set(np.unique(train_ids).tolist()) == {ROAD, CAR, IGNORE}
    # pixels well inside each polygon (edges depend on the rasteriser)
    assert (train_ids[:9] == IGNORE).all()              # unlabeled
    assert (train_ids[11:19, 14:19] == ROAD).all()
    assert (train_ids[11:19, 28:31] == ROAD).all()
    assert (train_ids[13:17, 5:12] == CAR).all()        # plate not drawn
    assert (train_ids[14:17, 21:26] == CAR).all()       # cargroup -> car
    records = json.loads(
        (cityscapes_root / 'sample_class_stats.json').read_text())
    assert [r['file'] for r in records] == [
        f'gtFine/train/aachen/{STEM}_gtFine_labelTrainIds.png']
    counts = records[0]['counts']
    assert sum(counts.values()) == H * W
    for key, count in counts.items():
        assert (train_ids == int(key)).sum() == count


def test_existing_files_are_skipped_unless_forced(tool, cityscapes_root,
                                                  capsys):
    assert run(tool, cityscapes_root) == 0
    out = cityscapes_root / 'gtFine' / 'train' / 'aachen' / \
        f'{STEM}_gtFine_labelTrainIds.png'
    cv2.imwrite(str(out), np.full((H, W), 7, np.uint8))   # a marker
    capsys.readouterr()
    assert run(tool, cityscapes_root) == 0
    assert '0 converted, 1 already done' in capsys.readouterr().out
    assert (train_ids_of(cityscapes_root) == 7).all()
    assert run(tool, cityscapes_root, '--force') == 0
    assert '1 converted' in capsys.readouterr().out
    assert (train_ids_of(cityscapes_root)[13:17, 5:12] == CAR).all()


def test_unknown_label_is_named(tool, cityscapes_root, capsys):
    json_file = cityscapes_root / 'gtFine' / 'train' / 'aachen' / \
        f'{STEM}_gtFine_polygons.json'
    write_polygons(json_file, OBJECTS + [dict(
        label='spaceship', polygon=[[0, 0], [3, 0], [3, 3]])])
    assert run(tool, cityscapes_root) == 2
    err = capsys.readouterr().err
    assert 'error: cannot convert' in err and json_file.name in err
    assert 'spaceship' in err
    # no partial output is left behind
    assert not list(json_file.parent.glob('*.png'))


def test_label_ids_only_suggests_the_option(tool, cityscapes_root, capsys):
    gt = cityscapes_root / 'gtFine' / 'train' / 'aachen'
    (gt / f'{STEM}_gtFine_polygons.json').unlink()
    cv2.imwrite(str(gt / f'{STEM}_gtFine_labelIds.png'),
                np.full((H, W), 7, np.uint8))
    assert run(tool, cityscapes_root) == 2
    assert '--from-label-ids' in capsys.readouterr().err


@pytest.mark.parametrize('make', ['nothing', 'no gtFine'])
def test_missing_layout_is_a_clear_cli_error(python, tmp_path, make):
    root = tmp_path / 'cityscapes'
    if make == 'no gtFine':
        for split in ('train', 'val'):
            (root / 'leftImg8bit' / split).mkdir(parents=True)
    result = subprocess.run([python, str(TOOL), str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith('error: ')
    missing = root if make == 'nothing' else root / 'gtFine' / 'train'
    assert f'{missing} does not exist' in result.stderr
    assert ('CITYSCAPES_ROOT/leftImg8bit/{train,val}/<city>/'
            '*_leftImg8bit.png') in result.stderr
    assert 'Traceback' not in result.stdout + result.stderr


def add_val_annotation(root):
    gt = root / 'gtFine' / 'val' / 'frankfurt'
    gt.mkdir(parents=True)
    json_file = gt / 'frankfurt_000000_000294_gtFine_polygons.json'
    write_polygons(json_file, OBJECTS[:1])   # road only
    return json_file


def test_a_single_split_is_converted(tool, cityscapes_root, capsys):
    val_json = add_val_annotation(cityscapes_root)
    for folder in ('leftImg8bit', 'gtFine'):
        shutil.rmtree(cityscapes_root / folder / 'train')
    assert run(tool, cityscapes_root, '--class-stats') == 0
    captured = capsys.readouterr()
    assert '1 converted, 0 already done' in captured.out
    assert (f'warning: skipped the train split: {cityscapes_root / "gtFine" / "train"} '
            'does not exist') in captured.err
    assert 'no train annotations, so no class stats written' in captured.err
    assert train_ids_path(val_json).is_file()
    assert not (cityscapes_root / 'sample_class_stats.json').exists()


def test_class_stats_count_the_train_split_only(tool, cityscapes_root):
    val_json = add_val_annotation(cityscapes_root)
    assert run(tool, cityscapes_root, '--class-stats') == 0
    assert train_ids_path(val_json).is_file()   # converted, not counted
    records = json.loads((cityscapes_root / 'sample_class_stats.json').read_text())
    assert [r['file'] for r in records] == [
        f'gtFine/train/aachen/{STEM}_gtFine_labelTrainIds.png']


@pytest.mark.parametrize('top', [33, 300])
def test_16_bit_label_ids(tool, cityscapes_root, capsys, top):
    gt = cityscapes_root / 'gtFine' / 'train' / 'aachen'
    (gt / f'{STEM}_gtFine_polygons.json').unlink()
    label_ids = np.full((H, W), 7, np.uint16)   # road
    label_ids[0, 0] = top
    label_file = gt / f'{STEM}_gtFine_labelIds.png'
    cv2.imwrite(str(label_file), label_ids)
    result = run(tool, cityscapes_root, '--from-label-ids')
    if top == 33:   # values up to 255: read as 8-bit ids, as before
        assert result == 0
        assert (train_ids_of(cityscapes_root)[1:] == ROAD).all()
        return
    assert result == 2
    err = capsys.readouterr().err
    assert f'error: label file {label_file} is a 16-bit' in err
    assert 'values 7..300; expected Cityscapes label ids in 0..255' in err


def test_an_output_older_than_its_annotation_is_converted_again(tool, cityscapes_root,
                                                                capsys):
    assert run(tool, cityscapes_root) == 0
    out = train_ids_path(cityscapes_root / 'gtFine' / 'train' / 'aachen' /
                         f'{STEM}_gtFine_polygons.json')
    cv2.imwrite(str(out), np.full((H, W), 7, np.uint8))   # a marker
    old = os.stat(out).st_mtime - 3600
    os.utime(out, (old, old))
    capsys.readouterr()
    assert run(tool, cityscapes_root) == 0
    assert '1 converted, 0 already done' in capsys.readouterr().out
    assert (train_ids_of(cityscapes_root)[13:17, 5:12] == CAR).all()


def test_converting_train_files_without_class_stats_warns_that_the_stats_are_old(
        tool, cityscapes_root, capsys):
    assert run(tool, cityscapes_root, '--class-stats') == 0
    stats = cityscapes_root / 'sample_class_stats.json'
    written = stats.read_text()
    assert run(tool, cityscapes_root) == 0   # nothing converted: nothing to say
    assert 'predates' not in capsys.readouterr().err
    assert run(tool, cityscapes_root, '--force') == 0
    err = capsys.readouterr().err
    assert (f'warning: {stats} predates the 1 train label files converted now' in err
            and 'run again with --class-stats' in err)
    assert stats.read_text() == written   # not rewritten without the option
    add_val_annotation(cityscapes_root)   # a val file only: the stats do not count it
    assert run(tool, cityscapes_root) == 0
    assert 'predates' not in capsys.readouterr().err


def test_out_dir_takes_the_labels_and_stats_and_leaves_the_root_alone(tool, cityscapes_root,
                                                                      tmp_path, capsys):
    val_json = add_val_annotation(cityscapes_root)
    before = sorted(p.relative_to(cityscapes_root) for p in cityscapes_root.rglob('*'))
    out = tmp_path / 'converted'
    assert run(tool, cityscapes_root, '--class-stats', '--out-dir', out) == 0
    assert sorted(p.relative_to(cityscapes_root) for p in cityscapes_root.rglob('*')) == before
    train = out / 'train' / 'aachen' / f'{STEM}_gtFine_labelTrainIds.png'
    val = out / 'val' / 'frankfurt' / 'frankfurt_000000_000294_gtFine_labelTrainIds.png'
    assert (cv2.imread(str(train), cv2.IMREAD_UNCHANGED)[13:17, 5:12] == CAR).all()
    assert (cv2.imread(str(val), cv2.IMREAD_UNCHANGED)[11:19, 14:19] == ROAD).all()
    # names relative to the stats file's folder, as ClassBalancedSampler resolves them
    records = json.loads((out / 'sample_class_stats.json').read_text())
    assert [r['file'] for r in records] == [f'train/aachen/{STEM}_gtFine_labelTrainIds.png']
    printed = capsys.readouterr().out
    assert f'under {out})' in printed
    assert f'val_dataloader.dataset.data_prefix.seg_map_path={out / "val"} ' in printed
    assert f'sampler.stats_file={out / "sample_class_stats.json"}' in printed
    assert run(tool, cityscapes_root, '--out-dir', out) == 0   # up to date there
    assert '0 converted, 2 already done' in capsys.readouterr().out
    assert val_json.exists()


def test_an_out_dir_that_is_a_file_is_refused(tool, cityscapes_root, tmp_path, capsys):
    (tmp_path / 'taken').write_text('')
    assert run(tool, cityscapes_root, '--out-dir', tmp_path / 'taken') == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --out-dir') and str(tmp_path / 'taken') in err


def test_the_test_split_is_left_alone_and_said(tool, cityscapes_root, capsys):
    # Cityscapes ships gtFine/test annotations without the classes (the labels are
    # withheld): their train ids would be all 255, a quarter of the files for nothing
    test_json = cityscapes_root / 'gtFine' / 'test' / 'berlin' / \
        'berlin_000000_000019_gtFine_polygons.json'
    test_json.parent.mkdir(parents=True)
    write_polygons(test_json, [])
    assert run(tool, cityscapes_root) == 0
    captured = capsys.readouterr()
    assert '1 converted, 0 already done' in captured.out
    assert (f'not converted: {cityscapes_root / "gtFine" / "test"} (only train and val '
            'are; Cityscapes withholds the test labels)') in captured.out
    assert not train_ids_path(test_json).exists()
    assert train_ids_of(cityscapes_root).shape == (H, W)


def test_class_stats_of_another_tool_are_left_alone_and_named(tool, cityscapes_root,
                                                              capsys):
    # --class-stats replaced DAFormer's flat file of the same name without a word
    foreign = '[{"file": "gtFine/train/x.png", "7": 100}]'
    (cityscapes_root / 'sample_class_stats.json').write_text(foreign)
    assert run(tool, cityscapes_root, '--class-stats') == 2
    err = capsys.readouterr().err
    assert f'error: {cityscapes_root}/sample_class_stats.json is not a class-stats file' in err
    assert (cityscapes_root / 'sample_class_stats.json').read_text() == foreign
    assert run(tool, cityscapes_root) == 0  # without --class-stats it is not read
