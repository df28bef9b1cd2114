import pytest

from mmseg_saot.utils.data_errors import explain_data_read_failure


def test_a_loading_transform_failure_is_explained_from_frames_or_worker_text(tmp_path):
    from mmcv.transforms import LoadImageFromFile

    garbage = tmp_path / 'x.png'
    garbage.write_bytes(b'not a png')
    with pytest.raises(AssertionError) as info:  # raised in mmcv/transforms/loading.py
        LoadImageFromFile()(dict(img_path=str(garbage)))
    assert explain_data_read_failure(info.value) == (
        f'reading a data sample failed (AssertionError: failed to load image: {garbage}). '
        '`python tools/check_data.py CONFIG` lists every unreadable or unusable image and '
        'label map of the config, with its file.')
    worker = RuntimeError(  # how torch re-raises a DataLoader worker's error
        'Caught UnidentifiedImageError in DataLoader worker process 0.\n'
        'Original Traceback (most recent call last):\n'
        '  File "/env/mmseg/datasets/transforms/loading.py", line 110, in _load_seg_map\n'
        'PIL.UnidentifiedImageError: cannot identify image file <_io.BytesIO>\n')
    assert explain_data_read_failure(worker).startswith(
        'reading a data sample failed (PIL.UnidentifiedImageError: cannot identify image '
        'file <_io.BytesIO>). `python tools/check_data.py CONFIG`')
    assert explain_data_read_failure(ValueError('a bug of ours')) is None
    # the user's --cfg-options may point the datasets elsewhere: the command repeats them
    assert ('`python tools/check_data.py CONFIG --cfg-options '
            "test_dataloader.dataset.data_root=/my/cs 'a.b=[1, 2]'` lists") in \
        explain_data_read_failure(worker, cfg_options=['test_dataloader.dataset.data_root=/my/cs',
                                                       'a.b=[1, 2]'])


def test_cfg_options_items_are_read_from_a_command_line():
    from mmseg_saot.utils.cli import cfg_options_items
    argv = ['cfg.py', 'ckpt.pth', '--cfg-options', 'a=1', 'b.c=2', '--out', 'o', '--tta']
    assert cfg_options_items(argv) == ['a=1', 'b.c=2']
    assert cfg_options_items(['cfg.py', '--work-dir', 'w']) == []
    # the forms argparse also takes were left out of the hints
    assert cfg_options_items(['cfg.py', '--cfg-options=a=1', '--out', 'o']) == ['a=1']
    assert cfg_options_items(['cfg.py', '--cfg', 'a=1', 'b=2']) == ['a=1', 'b=2']
