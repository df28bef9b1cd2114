"""Which images a score was measured on, recorded beside it so that tables built from
several score files (``tools/summarize_uda.py``) can tell different image sets apart."""
from typing import Any, Dict, Optional


def dataset_identity(dataset: Any) -> Dict[str, Optional[str]]:
    """``type``, ``data_root``, ``img_path`` and ``num_images`` of a built dataset (an
    MMSeg ``BaseSegDataset``; a wrapper gives its own type and None where it has no such
    attribute). ``num_images`` tells a subset (``indices``) from the whole set.

    Args:
        dataset: the dataset whose images were scored.

    Returns:
        A JSON-ready dict; a field that is not a string is None.
    """
    prefix = getattr(dataset, 'data_prefix', None)
    img_path = prefix.get('img_path') if isinstance(prefix, dict) else None
    root = getattr(dataset, 'data_root', None)
    try:
        num_images = len(dataset)
    except TypeError:  # not sized
        num_images = None
    return dict(type=type(dataset).__name__,
                data_root=root if isinstance(root, str) else None,
                img_path=img_path if isinstance(img_path, str) else None,
                num_images=num_images)

