"""tools/dataset_converters/make_demo_data.py: layout, idempotence, and that
its trees go through the GTA5 and Cityscapes converters."""
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest
from tool_scripts import load_tool
from PIL import Image

from mmseg_saot.datasets.cityscapes_labels import label_ids_to_train_ids

TOOLS = Path(__file__).resolve().parents[2] / 'tools' / 'dataset_converters'
TINY = ['--num-source', '2', '--num-target-train', '2', '--num-target-val',
        '1']


def load(name):
    return load_tool(TOOLS / f'{name}.py')


@pytest.fixture(scope='module')
def tool():
    return load('make_demo_data')


def files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob('*')
                  if p.is_file())


@pytest.fixture(scope='module')
def demo(python, tmp_path_factory):
    """A tiny demo tree made by the CLI with two worker processes."""
    out = tmp_path_factory.mktemp('data') / 'demo'
    result = subprocess.run([python, str(TOOLS / 'make_demo_data.py'),
                             '--out', str(out), '--nproc', '2'] + TINY,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'wrote 5 scenes' in result.stdout
    return out


def test_layout(demo):
    val = 'cityscapes/gtFine/val/demo/demo_000000_000019'
    expected = ['DONE.json', 'gta5/images/00000.png', 'gta5/images/00001.png',
                'gta5/labels/00000.png', 'gta5/labels/00001.png']
    for split, index in (('train', 0), ('train', 1), ('val', 0)):
        name = f'demo/demo_{index:06d}_000019'
        expected += [f'cityscapes/leftImg8bit/{split}/{name}_leftImg8bit.png',
                     f'cityscapes/gtFine/{split}/{name}_gtFine_labelIds.png',
                     f'cityscapes/gtFine/{split}/{name}_gtFine_'
                     'labelTrainIds.png']
    assert files(demo) == sorted(expected)
    image = cv2.imread(str(demo / 'gta5/images/00000.png'))
    assert image.shape == (224, 448, 3)
    label = Image.open(demo / 'gta5/labels/00000.png')
    assert label.mode == 'P' and label.size == (448, 224)   # like GTA5
    ids = cv2.imread(str(demo / f'{val}_gtFine_labelIds.png'),
                     cv2.IMREAD_UNCHANGED)
    train_ids = cv2.imread(str(demo / f'{val}_gtFine_labelTrainIds.png'),
                           cv2.IMREAD_UNCHANGED)
    assert ids.shape == (224, 448) and (label_ids_to_train_ids(ids)
                                        == train_ids).all()
    stamp = json.loads((demo / 'DONE.json').read_text())['config']
    assert stamp['num_source'] == 2 and stamp['seed'] == 0


def test_second_run_is_a_no_op(tool, demo, capsys):
    before = {p: p.stat().st_mtime_ns for p in demo.rglob('*.png')}
    assert tool.main(['--out', str(demo), '--nproc', '1'] + TINY) == 0
    assert 'nothing to do' in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in demo.rglob('*.png')} == before


def test_the_advice_to_regenerate_works(tool, tmp_path, capsys):
    # it said to delete DONE.json, after which the tool refused the unstamped folders
    import shutil
    out = tmp_path / 'demo'
    args = ['--out', str(out), '--nproc', '1', '--num-source', '1', '--num-target-train',
            '1', '--num-target-val', '1']
    assert tool.main(args) == 0
    assert tool.main(args) == 0
    printed = capsys.readouterr().out
    assert f'Delete the folder {out} to regenerate.' in printed
    shutil.rmtree(out)
    assert tool.main(args) == 0
    assert 'wrote 3 scenes' in capsys.readouterr().out


def test_other_arguments_regenerate(tool, tmp_path):
    out = tmp_path / 'demo'
    args = ['--out', str(out), '--nproc', '1', '--num-source', '1',
            '--num-target-train', '1', '--num-target-val', '0']
    assert tool.main(args) == 0
    first = cv2.imread(str(out / 'gta5/images/00000.png'))
    assert tool.main(args + ['--seed', '1']) == 0
    assert json.loads((out / 'DONE.json').read_text())['config']['seed'] == 1
    assert (cv2.imread(str(out / 'gta5/images/00000.png')) != first).any()
    # an interrupted run leaves no stamp, so the next run starts over
    (out / 'DONE.json').unlink()
    (out / tool.IN_PROGRESS).touch()
    (out / 'gta5/images/00000.png').unlink()
    assert tool.main(args + ['--seed', '1']) == 0
    assert (out / 'gta5/images/00000.png').is_file()
    assert not (out / tool.IN_PROGRESS).exists()


def test_foreign_data_is_not_overwritten(tool, tmp_path, capsys):
    (tmp_path / 'gta5' / 'images').mkdir(parents=True)
    (tmp_path / 'gta5' / 'images' / 'real.png').write_bytes(b'x')
    assert tool.main(['--out', str(tmp_path), '--nproc', '1'] + TINY) == 2
    assert 'not written by make_demo_data' in capsys.readouterr().err
    assert (tmp_path / 'gta5' / 'images' / 'real.png').is_file()


def test_demo_trees_go_through_the_converters(demo, tmp_path):
    gta5 = load('gta5')
    root = tmp_path / 'gta5'
    shutil.copytree(demo / 'gta5', root)
    assert gta5.main([str(root), '--nproc', '1']) == 0
    records = json.loads((root / 'sample_class_stats.json').read_text())
    assert len(records) == 2
    assert all(sum(r['counts'].values()) == 224 * 448 for r in records)
    cityscapes = load('cityscapes')
    root = tmp_path / 'cityscapes'
    shutil.copytree(demo / 'cityscapes', root)
    written = sorted(root.rglob('*_labelTrainIds.png'))
    reference = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in written]
    for path in written:
        path.unlink()
    assert cityscapes.main([str(root), '--nproc', '1', '--from-label-ids',
                            '--class-stats']) == 0
    for path, expected in zip(written, reference):
        assert (cv2.imread(str(path), cv2.IMREAD_UNCHANGED) == expected).all()
    records = json.loads((root / 'sample_class_stats.json').read_text())
    # the train split only (2 images): val images never steer training's sampling
    assert [r['file'].split('/')[1] for r in records] == ['train', 'train']


def test_width_and_height_set_the_image_size(tool, tmp_path):
    out = tmp_path / 'big'
    assert tool.main(['--out', str(out), '--nproc', '1', '--width', '160', '--height', '96',
                      '--num-source', '1', '--num-target-train', '1',
                      '--num-target-val', '0']) == 0
    for image in out.rglob('*.png'):
        assert Image.open(image).size == (160, 96), image
    assert json.loads((out / 'DONE.json').read_text())['config']['width'] == 160


def test_target_shift_moves_only_the_target_style(tool, tmp_path):
    from mmseg_saot.datasets import synthetic_streets as streets
    assert tool.domain_style('target', 1.0) == streets.TARGET_STYLE
    assert tool.domain_style('target', 0.0) == streets.SOURCE_STYLE
    assert tool.domain_style('source', 0.5) == streets.SOURCE_STYLE
    half = tool.domain_style('target', 0.5)
    assert half.saturation == pytest.approx(
        (streets.SOURCE_STYLE.saturation + streets.TARGET_STYLE.saturation) / 2)
    small = ['--nproc', '1', '--num-source', '1', '--num-target-train', '0',
             '--num-target-val', '1', '--width', '160', '--height', '96']
    val = 'cityscapes/leftImg8bit/val/demo/demo_000000_000019_leftImg8bit.png'
    images = {}
    for shift in ('0', '1'):
        out = tmp_path / shift
        assert tool.main(['--out', str(out), '--target-shift', shift] + small) == 0
        images[shift] = (cv2.imread(str(out / 'gta5/images/00000.png')),
                         cv2.imread(str(out / val)))
        stamp = json.loads((out / 'DONE.json').read_text())['config']
        # the default is not stamped, so older demo trees stay up to date
        assert stamp.get('target_shift') == (0.0 if shift == '0' else None)
    assert (images['0'][0] == images['1'][0]).all()   # same source
    assert (images['0'][1] != images['1'][1]).any()   # another target
    expected, _ = streets.render_scene(tool.scene_seed(0, 'target', 'val', 0),
                                       streets.SOURCE_STYLE, width=160, height=96)
    assert (images['0'][1] == cv2.cvtColor(expected, cv2.COLOR_RGB2BGR)).all()
    with pytest.raises(SystemExit):
        tool.parse_args(['--target-shift', '1.5'])


def test_an_out_that_is_a_file_is_named(tool, tmp_path, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('kept')
    for out, message in ((afile, f'error: --out: {afile} exists and is not a folder; pick '
                          'another path.'),
                         (afile / 'demo', f'error: --out: cannot create the folder '
                          f'{afile}/demo ({afile} is a file); pick a writable path.')):
        assert tool.main(['--out', str(out), '--nproc', '1'] + TINY) == 2
        assert capsys.readouterr().err.strip() == message
    assert afile.read_text() == 'kept'


def test_a_negative_seed_is_an_argument_error(tool, capsys):
    # numpy's generator raised a ValueError traceback from inside a worker
    with pytest.raises(SystemExit) as stop:
        tool.parse_args(['--seed', '-1'])
    assert stop.value.code == 2
    assert '--seed' in capsys.readouterr().err
