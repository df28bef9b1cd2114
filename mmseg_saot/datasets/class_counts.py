"""Check that the decode head predicts as many classes as every dataset it meets has.

A head of 19 classes trained or scored on a 5-class dataset (or the reverse, a custom
train set with the val set left at Cityscapes) runs without any error in MMSeg: its
``IoUMetric`` histograms drop the predictions above the dataset's last class id, so the
mIoU is wrong, silently. Checked on the config before anything is built.
"""
from typing import List, Mapping, Optional, Sequence

from mmseg_saot.utils.config_types import type_name

from .layout import dataset_roots, leaf_dataset_keys


def dataset_classes(dataset_cfg: Mapping) -> Optional[Sequence[str]]:
    """The class names a dataset config gives: its ``metainfo.classes``, else its type's
    ``METAINFO``; None if neither is known (an unregistered type)."""
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes'):
        return list(metainfo['classes'])
    from mmseg.registry import DATASETS
    dataset_type = dataset_cfg.get('type', '')
    if isinstance(dataset_type, str):  # else the class itself (pure-Python configs)
        try:
            dataset_type = DATASETS.get(dataset_type)
        except Exception:  # a scope that is not loaded: nothing to compare
            return None
    classes = (getattr(dataset_type, 'METAINFO', None) or {}).get('classes')
    return list(classes) if classes else None


def class_count_problems(cfg: Mapping, splits: Sequence[str]) -> List[str]:
    """One message per dataset of the dataloaders of ``splits`` (and the pseudo-label
    hook's source set, with ``'train'``) whose number of classes is not the decode
    head's ``num_classes``."""
    head = (cfg.get('model') or {}).get('decode_head')
    num_classes = head.get('num_classes') if isinstance(head, Mapping) else None
    if not isinstance(num_classes, int):
        return []
    problems = []
    for _, root_key, root in dataset_roots(cfg, splits):
        for key, leaf in leaf_dataset_keys(root, root_key):
            classes = dataset_classes(leaf)
            if classes is None or len(classes) == num_classes:
                continue
            shown = ', '.join(classes[:4]) + (', ...' if len(classes) > 4 else '')
            problems.append(
                f'model.decode_head.num_classes is {num_classes}, but {key} '
                f'({type_name(leaf.get("type"))}) has {len(classes)} classes ({shown}): the '
                'head and '
                'the metric would disagree on the class ids and the mIoU would be wrong; '
                f'set model.decode_head.num_classes={len(classes)} (and the num_classes of '
                "SAOTPseudoLabelHook), or give the dataset the head's classes in "
                'metainfo=dict(classes=...)')
    return problems
