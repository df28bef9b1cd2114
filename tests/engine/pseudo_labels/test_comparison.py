"""The comparison's output folder: one run's table and overlays, earlier ones kept."""
import os

from mmseg_saot.engine.pseudo_labels.comparison import set_aside_earlier_outputs


def test_an_earlier_table_and_its_overlays_are_moved_aside_not_mixed(tmp_path):
    assert set_aside_earlier_outputs(str(tmp_path)) is None  # a new folder: nothing to move
    (tmp_path / 'pseudo_label_miou.json').write_text('{"methods": {"saot": {}}}')
    (tmp_path / 'overlays' / 'saot').mkdir(parents=True)
    (tmp_path / 'overlays' / 'saot' / 'a.png').write_bytes(b'png')
    (tmp_path / 'notes.txt').write_text('mine')  # not the tool's: left alone
    os.utime(tmp_path / 'pseudo_label_miou.json', (10**9, 10**9))  # 2001-09-09 UTC
    earlier = set_aside_earlier_outputs(str(tmp_path))
    assert os.path.basename(earlier).startswith('earlier-2001')
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(earlier), 'notes.txt']
    assert (tmp_path / earlier / 'overlays' / 'saot' / 'a.png').read_bytes() == b'png'
    (tmp_path / 'pseudo_label_miou.json').write_text('{}')
    os.utime(tmp_path / 'pseudo_label_miou.json', (10**9, 10**9))  # same second: a new folder
    again = set_aside_earlier_outputs(str(tmp_path))
    assert again == f'{earlier}.1' and (tmp_path / again / 'pseudo_label_miou.json').exists()


def test_ground_truth_is_decoded_as_the_dataset_decodes_it(tmp_path):
    # a reduce_zero_label dataset (0 = ignore, class c stored as c + 1) was scored as
    # stored: every class off by one, mIoU 0 in the review's run
    import numpy as np
    from PIL import Image

    from mmseg_saot.engine.pseudo_labels.comparison import _label_encoding, _read_gt
    path = tmp_path / 'gt.png'
    Image.fromarray(np.array([[0, 1, 2, 255]] * 2, np.uint8)).save(path)
    assert _read_gt(str(path)).tolist() == [[0, 1, 2, 255]] * 2
    encoding = _label_encoding(dict(reduce_zero_label=True, label_map=None))
    assert _read_gt(str(path), *encoding).tolist() == [[255, 0, 1, 255]] * 2
    mapped = _label_encoding(dict(reduce_zero_label=False, label_map={1: 0, 2: 1}))
    assert _read_gt(str(path), *mapped).tolist() == [[0, 0, 1, 255]] * 2
