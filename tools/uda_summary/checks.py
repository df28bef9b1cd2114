"""Whether the columns of ``tools/summarize_uda.py`` can share one table: labels, class
lists, splits and images, and reference columns' means."""
from typing import Dict, List

from .columns import Source

def check_class_names(columns: List[Source]) -> None:
    """Every class of a ``ref`` column must be one of the measured columns' classes."""
    known = list(dict.fromkeys(c for column in columns if not column.reference
                               for c in column.iou))
    for column in columns:
        unknown = [c for c in column.iou if known and c not in known]
        if unknown:
            raise ValueError(f'--column {column.label}: {column.what} names classes the other '
                             f'columns do not have: {unknown}; use these names: {known}.')


def check_same_classes(columns: List[Source]) -> None:
    """Every measured (``run``/``pl``) column must cover the same classes: columns of
    different class lists (different datasets' classes) give per-class rows and means
    over different label sets, which one table cannot compare.

    Raises:
        ValueError: naming the first column whose classes differ from the first
            measured column's, and the classes only one of them has.
    """
    measured = [column for column in columns if not column.reference]
    for column in measured[1:]:
        first = measured[0]
        only_first = [c for c in first.iou if c not in column.iou]
        only_this = [c for c in column.iou if c not in first.iou]
        if only_first or only_this:
            raise ValueError(
                f'--column {first.label} ({first.what}) and --column {column.label} '
                f'({column.what}) are scored on different classes ({len(first.iou)} and '
                f'{len(column.iou)}; only in {first.label}: {only_first or "none"}; only in '
                f'{column.label}: {only_this or "none"}): their per-class IoU and mIoU '
                'cannot be compared. Summarise runs of one dataset\'s classes per table.')


def check_has_values(columns: List[Source]) -> None:
    """Every column must give some class an IoU; a column whose every class is absent
    from its ground truth would be a blank column with an mIoU of nan.

    Raises:
        ValueError: naming the column and where its numbers come from.
    """
    for column in columns:
        if not covered(column):
            raise ValueError(f'--column {column.label} ({column.what}): no class has an IoU '
                             '(every class is absent from its ground truth); nothing to show.')


def provenance(column: Source) -> str:
    """Where a measured column's numbers come from: split and images, or 'unknown'."""
    split = f'{column.split} split' if column.split else 'split unknown'
    return f'{split}, {column.dataset}' if column.dataset else split


def mixed_provenance(columns: List[Source]) -> List[str]:
    """One warning per way the measured columns' images may differ: different splits,
    different recorded datasets, or a pseudo-label file that records no split."""
    measured = [column for column in columns if not column.reference]
    found = []
    for field, name in (('split', 'splits'), ('dataset', 'images'),
                        ('num_images', 'numbers of images')):
        values = {getattr(column, field) for column in measured} - {None}
        if len(values) > 1:
            found.append(f'the columns are scored on different {name} (' + '; '.join(
                f'{column.label}: {getattr(column, field)}' for column in measured
                if getattr(column, field)) + '): their IoUs are not over the same images.')
    for column in measured:
        if column.split is None:
            found.append(f'--column {column.label}: its file does not record the split it was '
                         'scored on (written before the split was recorded): split unknown; '
                         'score it again with tools/generate_pseudo_labels.py to record it.')
    return found


def check_labels(specs: List[str]) -> None:
    """Every ``--column`` LABEL must be new: the JSON output is keyed by label."""
    seen = set()
    for spec in specs:
        label = spec.partition('=')[0]
        if label and label in seen:
            raise ValueError(f'--column: the label {label!r} is given twice; give every '
                             'column its own label.')
        seen.add(label)


def covered(column: Source) -> List[str]:
    """The classes a column's computed mIoU is the mean over (those with a value)."""
    return [c for c, v in column.iou.items() if v is not None]


def partial_references(columns: List[Source]) -> Dict[str, str]:
    """``{label: why}`` for each ``ref`` column whose computed mIoU is not over the classes
    of the others: the measured columns' classes, or with none, all columns' classes."""
    basis = [column for column in columns if not column.reference] or columns
    others = list(dict.fromkeys(c for column in basis for c in covered(column)))
    found = {}
    for column in columns:
        if not column.reference or column.reported_miou is not None:
            continue
        own = covered(column)
        lacks = [c for c in others if c not in own]
        adds = [c for c in own if c not in others]
        if lacks or adds:
            what = '; '.join(part for part in (
                f'it lacks {", ".join(lacks)}' if lacks else '',
                f'it adds {", ".join(adds)}' if adds else '') if part)
            found[column.label] = (
                f'its mIoU is the mean over the {len(own)} class{"es" * (len(own) != 1)} '
                f'it gives, the other columns\' over {len(others)} ({what})')
    return found


