"""What identifies a pseudo-label cache: file checksums and the changed entries."""
import os

from mmseg_saot.datasets.pseudo_label_cache import changed_entries
from mmseg_saot.engine.pseudo_labels.fingerprint import dataset_files, files_checksum


def test_files_checksum_follows_size_and_modification_time(tmp_path):
    path = tmp_path / 'a.png'
    path.write_bytes(b'12345')
    first = files_checksum([str(path), None])
    assert files_checksum([str(path), None]) == first  # nothing read changes it
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    touched = files_checksum([str(path), None])
    assert touched != first
    path.write_bytes(b'123456')
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert files_checksum([str(path), None]) != touched  # same time, other size
    assert files_checksum([str(path), None]) != files_checksum([None, str(path)])  # order
    missing = str(tmp_path / 'gone.png')
    assert files_checksum([missing]) != files_checksum([None])


class Items:
    def __len__(self):
        return 3

    def get_data_info(self, index):
        return dict(img_path=f'img{index}', seg_map_path=f'lab{index}' if index else None)


def test_dataset_files_lists_images_and_label_maps():
    assert dataset_files(Items()) == ['img0', 'img1', 'img2']
    assert dataset_files(Items(), [0, 2], labels=True) == ['img0', None, 'img2', 'lab2']


def test_changed_entries_names_what_differs():
    old = dict(labeler={'k': 1}, target_files_checksum='a', backbone='vit')
    new = dict(labeler={'k': 2}, target_files_checksum='b', backbone='vit', extra=1)
    assert changed_entries(old, new) == 'extra, labeler, target_files_checksum'
    assert changed_entries(None, new) == ''
