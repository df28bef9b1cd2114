"""PseudoLabelCache: a folder it did not write, or a damaged manifest, is moved aside."""
import json

import pytest

from mmseg_saot.datasets.pseudo_label_cache import PseudoLabelCache
from mmseg_saot.utils.errors import UserInputError


@pytest.mark.parametrize('manifest', ['[]', '{"config_hash": null}', '{"truncated'])
def test_a_damaged_manifest_is_a_cache_of_other_settings(tmp_path, manifest):
    # valid JSON that is no object, or a null hash, crashed open() (AttributeError,
    # TypeError); like a missing manifest, the folder is moved aside, never deleted
    root = tmp_path / 'pseudo_labels'
    root.mkdir()
    (root / 'manifest.json').write_text(manifest)
    cache = PseudoLabelCache(str(root))
    assert cache.open(dict(method='saot')) == 'new'
    moved = list(tmp_path.glob('pseudo_labels.stale-unknown*'))
    assert len(moved) == 1 and (moved[0] / 'manifest.json').read_text() == manifest
    assert json.loads((root / 'manifest.json').read_text())['complete'] is False


def test_a_folder_that_is_no_cache_is_refused_and_left_alone(tmp_path):
    # a dataset root given as pseudo_label_dir was renamed to <root>.stale-unknown, and
    # the run then failed to find its own images
    root = tmp_path / 'cs'
    (root / 'leftImg8bit').mkdir(parents=True)
    (root / 'README').write_text('data')
    cache = PseudoLabelCache(str(root), option='pseudo_label_dir')
    with pytest.raises(UserInputError, match=(
            f'pseudo_label_dir: {root} holds files but is no pseudo-label cache \\(no '
            'manifest.json; it holds README, leftImg8bit\\), so it is left as it is')):
        cache.open(dict(method='saot'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cs']
    # a cache whose manifest is gone (labels only) is still moved aside
    (tmp_path / 'cache' / 'labels').mkdir(parents=True)
    assert PseudoLabelCache(str(tmp_path / 'cache')).open(dict(method='saot')) == 'new'
    assert (tmp_path / 'cache.stale-unknown' / 'labels').is_dir()


def test_a_manifest_write_cut_by_a_kill_leaves_a_cache_that_opens(tmp_path):
    # kill -9 during the first manifest write left only its temporary, and every rerun
    # refused the folder as "no pseudo-label cache" until it was deleted by hand
    root = tmp_path / 'pseudo_labels'
    root.mkdir()
    (root / 'manifest.json.17124.466919d6.tmp').write_text('{"config_h')
    assert PseudoLabelCache(str(root)).open(dict(method='saot')) == 'new'
    assert json.loads((root / 'manifest.json').read_text())['complete'] is False
