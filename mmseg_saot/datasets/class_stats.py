"""Per-image class pixel counts, the input of class-balanced sampling.

The converters write one JSON file per dataset root,
``sample_class_stats.json``::

    [{"file": "labels/00001_labelTrainIds.png",
      "counts": {"0": 40211, "2": 9000, "255": 1133}}, ...]

``file`` is relative to the dataset root; ``counts`` maps each train id that
occurs in the image (as a string, JSON keys are strings) to its number of
pixels, with ignored pixels under ``"255"``, so the counts of an image sum to
its height x width. Pure numpy and json: no mmseg or mmengine.
"""
import json
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np

from mmseg_saot.utils.atomic import atomic_write_text

STATS_FILENAME = 'sample_class_stats.json'


def class_pixel_counts(train_map: np.ndarray) -> Dict[str, int]:
    """Pixels per value of a uint8 train-id map, for the values present.

    Returns:
        ``{str(train_id): count}`` in increasing id order; the counts sum to
        ``train_map.size``.
    """
    train_map = np.asarray(train_map)
    if train_map.dtype != np.uint8:
        raise TypeError('expected a uint8 train-id map, got '
                        f'{train_map.dtype}')
    counts = np.bincount(train_map.ravel(), minlength=256)
    return {str(value): int(counts[value]) for value in np.flatnonzero(counts)}


def total_class_counts(records: Iterable[Mapping]) -> Dict[int, int]:
    """Sum the ``counts`` of many records: ``{train_id: pixels}``, sorted."""
    totals: Dict[int, int] = {}
    for record in records:
        for key, count in record['counts'].items():
            totals[int(key)] = totals.get(int(key), 0) + int(count)
    return dict(sorted(totals.items()))


def save_class_stats(path: str, records: List[Mapping]) -> None:
    """Write records sorted by file name, atomically (temp file + rename)."""
    records = sorted(records, key=lambda record: record['file'])
    atomic_write_text(path, json.dumps(records, indent=None, separators=(',', ':')) + '\n')


def load_class_stats(path: str) -> List[Dict]:
    """Read a stats file written by :func:`save_class_stats`.

    Raises:
        ValueError: the file is not JSON, or not a list of such records; names it.
    """
    with open(path) as f:
        try:
            records = json.load(f)
        except ValueError as err:
            raise ValueError(f'{path} is not a class-stats file: not JSON ({err})') from None
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and 'file' in r and 'counts' in r
            for r in records):
        raise ValueError(f'{path} is not a class-stats file: expected a list '
                         'of {"file": ..., "counts": {...}} records')
    for index, record in enumerate(records):
        problem = _record_problem(record)
        if problem:
            raise ValueError(f'{path}: record {index} ({json.dumps(record)[:120]}) {problem}; '
                             'write the file again with the dataset converter (or fix '
                             'that record).')
    return records


def load_replaceable_class_stats(path: str) -> List[Dict]:
    """The records of ``path`` before a converter writes it again: none if it is absent.

    Raises:
        UserInputError: ``path`` holds another format (DAFormer's converters write a
            flat one under the same name), which the converter must not replace.
    """
    import os.path as osp

    from mmseg_saot.utils.errors import UserInputError
    if not osp.isfile(path):
        return []
    try:
        return load_class_stats(path)
    except ValueError as err:
        raise UserInputError(
            f'{err}. Another tool (e.g. DAFormer\'s converters) may have written it and '
            'read it, so it is left as it is: move it away and run again, or write the '
            'labels and statistics elsewhere with --out-dir DIR.') from None


def _record_problem(record: Mapping) -> Optional[str]:
    """What is wrong with one record, or None: ``file`` a path, ``counts`` a map of
    class ids (integers, as strings in JSON) to pixel counts (integers >= 0)."""
    if not isinstance(record['file'], str) or not record['file']:
        return 'has no file name'
    counts = record['counts']
    if not isinstance(counts, dict):
        return 'has counts that are not a {class id: pixels} map'
    for key, count in counts.items():
        if not str(key).lstrip('-').isdigit():
            return f'counts class {key!r}, not a class id'
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f'counts {count!r} pixels of class {key}, not a count'
    return None
