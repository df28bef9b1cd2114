from mmseg_saot.utils.checkpoints import newest_checkpoint, read_last_checkpoint


def test_read_last_checkpoint_tells_missing_from_empty(tmp_path):
    assert read_last_checkpoint(str(tmp_path)) is None
    (tmp_path / 'last_checkpoint').write_text('')
    assert read_last_checkpoint(str(tmp_path)) == ''
    (tmp_path / 'last_checkpoint').write_text(f'{tmp_path}/iter_8.pth\n')
    assert read_last_checkpoint(str(tmp_path)) == f'{tmp_path}/iter_8.pth'


def test_newest_checkpoint_compares_numbers_not_names(tmp_path):
    assert newest_checkpoint(str(tmp_path)) is None
    for name in ('iter_9.pth', 'iter_10.pth', 'iter_2.pth', 'iter_x.pth', 'best_mIoU_iter_50.pth',
                 'epoch_99.pth'):
        (tmp_path / name).write_bytes(b'')
    assert newest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')


def test_newest_checkpoint_follows_a_custom_template_first(tmp_path):
    for name in ('ckpt-3-of-run.pth', 'ckpt-12-of-run.pth', 'iter_40.pth'):
        (tmp_path / name).write_bytes(b'')
    found = newest_checkpoint(str(tmp_path), ('ckpt-{}-of-run.pth', 'iter_{}.pth'))
    assert found == str(tmp_path / 'ckpt-12-of-run.pth')
    assert newest_checkpoint(str(tmp_path), ('none_{}.pth', 'iter_{}.pth')) == str(
        tmp_path / 'iter_40.pth')
    only_epochs = tmp_path / 'epochs [1]'  # glob characters in the folder name
    only_epochs.mkdir()
    (only_epochs / 'epoch_3.pth').write_bytes(b'')
    assert newest_checkpoint(str(only_epochs)) == str(only_epochs / 'epoch_3.pth')
