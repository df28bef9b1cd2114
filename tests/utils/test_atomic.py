import threading

import pytest
import torch

from mmseg_saot.utils.atomic import (atomic_torch_save, atomic_write_bytes, atomic_write_png,
                                      atomic_write_text)


def test_writes_create_the_folder_and_leave_no_temporary(tmp_path):
    atomic_write_bytes(str(tmp_path / 'a' / 'b.bin'), b'\x00\x01')
    atomic_write_text(str(tmp_path / 'a' / 'c.json'), '{"ü": 1}')
    atomic_torch_save(dict(x=torch.arange(3)), str(tmp_path / 'd.pt'))
    assert (tmp_path / 'a' / 'b.bin').read_bytes() == b'\x00\x01'
    assert (tmp_path / 'a' / 'c.json').read_text(encoding='utf-8') == '{"ü": 1}'
    assert torch.equal(torch.load(tmp_path / 'd.pt', weights_only=True)['x'], torch.arange(3))
    assert sorted(p.name for p in tmp_path.rglob('*')) == ['a', 'b.bin', 'c.json', 'd.pt']


def test_a_failed_save_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'state.pt'
    atomic_torch_save([1, 2], str(path))
    with pytest.raises(Exception):
        atomic_torch_save(dict(lock=threading.Lock()), str(path))  # cannot be pickled
    assert torch.load(path, weights_only=True) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ['state.pt']


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'labels.png'
    atomic_write_bytes(str(path), b'old')

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr('os.replace', killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(str(path), b'new')
    assert path.read_bytes() == b'old' and [p.name for p in tmp_path.iterdir()] == ['labels.png']


def test_atomic_write_png_round_trips_and_matches_imwrite(tmp_path):
    import cv2
    import numpy as np
    image = (np.arange(24 * 16) % 255).astype(np.uint8).reshape(24, 16)
    path = tmp_path / 'labels' / 'a.png'
    atomic_write_png(str(path), image)
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), image)
    cv2.imwrite(str(tmp_path / 'b.png'), image)
    assert path.read_bytes() == (tmp_path / 'b.png').read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ['a.png']


def test_atomic_write_png_that_cannot_encode_leaves_nothing(tmp_path):
    import numpy as np
    with pytest.raises(Exception):
        atomic_write_png(str(tmp_path / 'bad.png'), np.zeros((4, 4, 7), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_the_temporary_a_cut_write_leaves_matches_its_published_name(tmp_path, monkeypatch):
    # PseudoLabelCache deletes leftovers by TEMPORARY_NAME: it must match the real ones
    import os

    from mmseg_saot.utils import atomic
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, 'replace',
                        lambda src, dst: seen.append(os.path.basename(src)) or
                        real_replace(src, dst))
    atomic.atomic_write_bytes(str(tmp_path / 'a.png'), b'x')
    assert len(seen) == 1 and atomic.TEMPORARY_NAME.fullmatch(seen[0])
    assert not atomic.TEMPORARY_NAME.fullmatch('a.png')


def test_a_write_reaches_the_disk_keeps_permissions_and_follows_a_link(tmp_path,
                                                                       monkeypatch):
    # no fsync before the rename (a power loss could leave the name on an empty file);
    # a 0600 file came back 0644, and a symlink was replaced by a regular file
    import os
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync', lambda fd: (synced.append(fd), real_fsync(fd))[1])
    private = tmp_path / 'private.json'
    private.write_text('old')
    private.chmod(0o600)
    atomic_write_bytes(str(private), b'new')
    assert private.read_bytes() == b'new' and (private.stat().st_mode & 0o777) == 0o600
    assert len(synced) == 2  # the file before the rename, its folder after
    target = tmp_path / 'target.json'
    target.write_text('old')
    link = tmp_path / 'link.json'
    link.symlink_to(target)
    atomic_write_bytes(str(link), b'through')
    assert link.is_symlink() and target.read_bytes() == b'through'
