"""PseudoLabelCache: a folder it did not write, or a damaged manifest, is moved aside."""
import json

import pytest

from mmseg_saot.datasets.pseudo_label_cache import PseudoLabelCache


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
