"""Per-image class pixel counts (the input of class-balanced sampling)."""
import json
import re

import numpy as np
import pytest

from mmseg_saot.datasets import class_stats


def test_counts_cover_every_pixel_including_ignored():
    train_map = np.array([[0, 0, 13], [255, 13, 0]], np.uint8)
    counts = class_stats.class_pixel_counts(train_map)
    assert counts == {'0': 3, '13': 2, '255': 1}
    assert sum(counts.values()) == train_map.size


def test_counts_need_a_uint8_map():
    with pytest.raises(TypeError, match='uint8'):
        class_stats.class_pixel_counts(np.zeros((2, 2), np.int64))


def test_save_sorts_and_load_round_trips(tmp_path):
    path = tmp_path / class_stats.STATS_FILENAME
    records = [dict(file='labels/b.png', counts={'1': 4}),
               dict(file='labels/a.png', counts={'0': 2, '255': 2})]
    class_stats.save_class_stats(str(path), records)
    loaded = class_stats.load_class_stats(str(path))
    assert [r['file'] for r in loaded] == ['labels/a.png', 'labels/b.png']
    assert class_stats.total_class_counts(loaded) == {0: 2, 1: 4, 255: 2}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file


def test_load_rejects_other_json(tmp_path):
    path = tmp_path / 'other.json'
    path.write_text(json.dumps({'file': 'x'}))
    with pytest.raises(ValueError, match='class-stats'):
        class_stats.load_class_stats(str(path))


@pytest.mark.parametrize('record, problem', [
    ({'file': 'a.png', 'counts': [1, 2]}, 'has counts that are not a {class id: pixels} map'),
    ({'file': 'a.png', 'counts': {'0': '12'}}, "counts '12' pixels of class 0, not a count"),
    ({'file': None, 'counts': {'0': 12}}, 'has no file name'),
    ({'file': 'a.png', 'counts': {'road': 12}}, "counts class 'road', not a class id")])
def test_a_malformed_record_is_named_with_its_file(tmp_path, record, problem):
    # each reached the sampler and failed there with an AttributeError or TypeError
    path = tmp_path / 'sample_class_stats.json'
    path.write_text(json.dumps([{'file': 'b.png', 'counts': {'0': 3, '255': 1}}, record]))
    with pytest.raises(ValueError, match=re.escape(f'{path}: record 1 (') + '.*' +
                       re.escape(f') {problem}; write the file again')):
        class_stats.load_class_stats(str(path))
