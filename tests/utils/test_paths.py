import os

import pytest

from mmseg_saot.utils.errors import UserInputError
from mmseg_saot.utils.paths import ensure_folder, move_aside, unused_path, why_not_creatable


def test_ensure_folder_creates_parents_and_keeps_existing_ones(tmp_path):
    folder = tmp_path / 'a' / 'b'
    ensure_folder(str(folder), 'opt')
    (folder / 'kept.txt').write_text('x')
    ensure_folder(str(folder), 'opt')
    assert (folder / 'kept.txt').read_text() == 'x'


def test_a_file_in_the_way_is_named_with_the_option(tmp_path):
    afile = tmp_path / 'afile'
    afile.write_text('x')
    with pytest.raises(UserInputError, match=f'^opt: {afile} exists and is not a folder; '):
        ensure_folder(str(afile), 'opt')
    deep = afile / 'b' / 'c'
    with pytest.raises(UserInputError) as info:
        ensure_folder(str(deep), 'model.feature_cache_dir')
    assert str(info.value) == (f'model.feature_cache_dir: cannot create the folder {deep} '
                               f'({afile} is a file); pick a writable path.')
    assert afile.read_text() == 'x'


def test_other_failures_give_the_system_reason(tmp_path):
    err = OSError(13, 'Permission denied')
    assert why_not_creatable(str(tmp_path / 'x'), err) == 'Permission denied'


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write anywhere')
def test_a_read_only_folder_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UserInputError, match='cannot create the folder'):
            ensure_folder(str(tmp_path / 'x'), 'opt')
    finally:
        tmp_path.chmod(0o700)


def test_an_existing_folder_where_no_file_can_be_made_is_refused(tmp_path, monkeypatch):
    # what root meets on a read-only mount: the permission bits allow, the write fails
    import tempfile
    (tmp_path / 'ro').mkdir()

    def refuse(*args, **kwargs):
        raise OSError(30, 'Read-only file system')
    monkeypatch.setattr(tempfile, 'TemporaryFile', refuse)
    with pytest.raises(UserInputError, match=f'^--work-dir: the folder {tmp_path}/ro is not '
                       'writable; pick a writable path.$'):
        ensure_folder(str(tmp_path / 'ro'), '--work-dir')
    monkeypatch.undo()
    ensure_folder(str(tmp_path / 'ro'), '--work-dir')
    assert list((tmp_path / 'ro').iterdir()) == []  # the check leaves nothing behind


def test_unused_path_never_names_an_existing_one(tmp_path):
    base = str(tmp_path / 'run.stale-ab')
    assert unused_path(base) == base
    (tmp_path / 'run.stale-ab').mkdir()
    (tmp_path / 'run.stale-ab.1').write_text('')
    assert unused_path(base) == f'{base}.2'


def test_is_up_to_date_needs_an_output_no_older_than_every_source(tmp_path):
    from mmseg_saot.utils.paths import is_up_to_date
    source, output = tmp_path / 'src', tmp_path / 'out'
    source.write_text('s')
    assert not is_up_to_date(str(output), [str(source)])       # not written yet
    output.write_text('o')
    os.utime(output, ns=(10**18, 10**18))
    os.utime(source, ns=(10**18, 10**18))
    assert is_up_to_date(str(output), [str(source)])           # same mtime: kept
    os.utime(source, ns=(10**18 + 1, 10**18 + 1))
    assert not is_up_to_date(str(output), [str(source)])       # source newer
    assert not is_up_to_date(str(output), [str(tmp_path / 'gone')])


def test_move_aside_moves_only_the_named_entries_into_a_folder_named_by_time(tmp_path):
    assert move_aside(str(tmp_path), ['a.png']) is None  # nothing there: nothing made
    assert os.listdir(tmp_path) == []
    (tmp_path / 'a.png').write_bytes(b'a')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'b.png').write_bytes(b'b')
    (tmp_path / 'keep.txt').write_text('mine')
    os.utime(tmp_path / 'a.png', (10**9, 10**9))  # 2001-09-09 UTC
    earlier = move_aside(str(tmp_path), ['a.png', 'sub', 'gone.png'], stamp_from='a.png')
    assert os.path.basename(earlier).startswith('earlier-2001')
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(earlier), 'keep.txt']
    assert (tmp_path / earlier / 'sub' / 'b.png').read_bytes() == b'b'
    (tmp_path / 'a.png').write_bytes(b'again')
    os.utime(tmp_path / 'a.png', (10**9, 10**9))  # the same second: never over the first
    assert move_aside(str(tmp_path), ['a.png']) == f'{earlier}.1'
    assert (tmp_path / earlier / 'a.png').read_bytes() == b'a'


def test_move_aside_takes_a_broken_symlink_along(tmp_path):
    # glob lists broken links: stamping the folder by its target's mtime raised
    # FileNotFoundError from getmtime
    (tmp_path / 'a.png').symlink_to(tmp_path / 'gone.png')
    earlier = move_aside(str(tmp_path), ['a.png'])
    assert earlier is not None and os.path.islink(os.path.join(earlier, 'a.png'))
    assert not os.path.lexists(tmp_path / 'a.png')
