import json

import numpy as np
import pytest
from PIL import Image
from tiny_uda import tiny_uda_config, write_tiny_uda_data
from tool_scripts import load_tool


@pytest.fixture
def tiny(tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data')
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    return data, config


def test_clean_data_passes(tiny, capsys):
    _, config = tiny
    assert load_tool('tools/check_data.py').main([str(config)]) == 0
    out = capsys.readouterr().out
    assert '[train: GTA5Dataset' in out and '4 samples, 0 problems' in out
    assert '[val: CityscapesDataset' in out and out.rstrip().endswith('every sample is usable')


@pytest.mark.parametrize('nproc', [1, 2])
def test_unusable_files_are_listed_with_their_problem(tiny, tmp_path, capsys, nproc):
    data, config = tiny
    labels = sorted((data / 'gta5' / 'labels').glob('*.png'))
    labels[0].write_bytes(b'garbage')
    Image.fromarray(np.full((56, 84), 33, np.uint8)).save(labels[1])  # a raw label id
    val_image = sorted((data / 'cs' / 'leftImg8bit' / 'val').rglob('*.png'))[0]
    val_image.write_bytes(val_image.read_bytes()[:100])  # truncated download
    report = tmp_path / 'report.json'
    code = load_tool('tools/check_data.py').main(
        [str(config), '--nproc', str(nproc), '--out', str(report)])
    assert code == 1
    out = capsys.readouterr().out
    assert f'  {labels[0]}: cannot read the label map (UnidentifiedImageError' in out
    assert f'  {labels[1]}: label values 33 are not class ids 0-18 nor the ignore index 255' \
        in out
    assert f'  {val_image}: cannot read the image' in out
    assert out.rstrip().endswith('3 problems: fix or remove those files (or drop them from the '
                                 'split list)')
    saved = json.loads(report.read_text())
    assert sum(len(entry['problems']) for entry in saved.values()) == 3


def test_splits_limit_what_is_read(tiny, capsys):
    data, config = tiny
    sorted((data / 'gta5' / 'labels').glob('*.png'))[0].write_bytes(b'garbage')
    assert load_tool('tools/check_data.py').main([str(config), '--splits', 'val']) == 0
    assert 'GTA5Dataset' not in capsys.readouterr().out


def test_unlabelled_targets_are_checked_as_images_only(tiny, capsys):
    import shutil
    data, config = tiny
    shutil.rmtree(data / 'cs' / 'gtFine' / 'train')  # the UDA target: images only
    assert load_tool('tools/check_data.py').main([str(config), '--splits', 'train']) == 0
    out = capsys.readouterr().out
    assert (f'[train: CityscapesDataset {data}/cs (train_dataloader.dataset.target.dataset)] '
            'reading 6 samples (images only: no label folder, and none is read)') in out
    assert out.rstrip().endswith('every sample is usable')


def test_labels_are_decoded_with_the_pipeline_backend(tiny, capsys):
    data, config = tiny
    label = sorted((data / 'cs' / 'gtFine' / 'val').rglob('*_labelTrainIds.png'))[0]
    ids = Image.open(label).convert('L')
    ids.putpalette([128, 64, 128] * 256)
    ids.convert('P').save(label)  # a palette PNG: class ids to Pillow, colours to OpenCV
    tool = load_tool('tools/check_data.py')
    assert tool.main([str(config), '--splits', 'val']) == 0
    assert tool.main([str(config), '--splits', 'val', '--cfg-options',
                      'val_dataloader.dataset.pipeline.1.imdecode_backend=cv2']) == 1
    assert f'  {label}: the label map has 3 channels' in capsys.readouterr().out


def test_datasets_of_one_type_and_root_are_reported_apart(tiny, capsys):
    # two lists of one root (as VOC's train.txt and aug.txt): a problem in either is kept
    data, config = tiny
    sorted((data / 'gta5' / 'labels').glob('*.png'))[0].write_bytes(b'garbage')
    with open(config, 'a') as f:
        f.write("\ntrain_dataloader['dataset']['source'] = dict(_delete_=True, "
                "type='ConcatDataset', datasets=[dict(source_set, pipeline=source_pipeline), "
                "dict(source_set, indices=[1, 2, 3], pipeline=source_pipeline)])\n")
    code = load_tool('tools/check_data.py').main([str(config), '--splits', 'train'])
    out = capsys.readouterr().out
    assert code == 1
    assert (f'[train: GTA5Dataset {data}/gta5 (train_dataloader.dataset.source.datasets.0)] '
            '4 samples, 1 problem') in out
    assert (f'[train: GTA5Dataset {data}/gta5 (train_dataloader.dataset.source.datasets.1)] '
            '3 samples, 0 problems') in out


def test_a_split_without_a_dataloader_is_said_and_nothing_checked_is_an_error(tiny, capsys):
    # it printed "every sample is usable" having read nothing
    _, config = tiny
    tool = load_tool('tools/check_data.py')
    without_test = ['--cfg-options', 'test_dataloader=None', 'test_cfg=None',
                    'test_evaluator=None']
    with pytest.raises(SystemExit) as stop:
        tool.main([str(config), '--splits', 'test'] + without_test)
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f'error: {config} has no dataloader with a dataset for --splits test: nothing was '
        'checked; pick splits it has.\n')
    assert tool.main([str(config)] + without_test) == 0
    out = capsys.readouterr().out
    assert f'[test] not checked: {config} has no test_dataloader with a dataset' in out
    assert '[val: CityscapesDataset' in out


def test_an_interrupt_lists_the_problems_found_so_far(tiny, tmp_path, capsys, monkeypatch):
    # Ctrl-C in a large set lost every problem already found (they were listed at the end)
    data, config = tiny
    labels = sorted((data / 'gta5' / 'labels').glob('*.png'))
    labels[0].write_bytes(b'garbage')
    tool = load_tool('tools/check_data.py')
    check_pair = tool.check_pair
    calls = []

    def interrupted_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return check_pair(*args, **kwargs)

    monkeypatch.setattr(tool, 'check_pair', interrupted_at_the_third)
    report = tmp_path / 'report.json'
    with pytest.raises(KeyboardInterrupt):
        tool.main([str(config), '--splits', 'train', '--out', str(report)])
    out = capsys.readouterr().out
    assert '2 read (interrupted) of 4 samples, 1 problem' in out
    assert f'  {labels[0]}: cannot read the label map' in out
    assert 'every sample is usable' not in out
    saved = json.loads(report.read_text())
    (entry,) = saved.values()
    assert entry['read'] == 2 and entry['samples'] == 4 and len(entry['problems']) == 1
    assert str(report) in tool.STOPPED['message']
