"""Per-image class pixel counts (the input of class-balanced sampling)."""
import json

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
