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
