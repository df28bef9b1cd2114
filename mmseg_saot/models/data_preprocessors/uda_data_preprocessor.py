"""Preprocess the source and target branches of a UDA batch separately."""
from numbers import Number
from typing import Any, Dict, List, Optional, Sequence

from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS

from mmseg_saot.utils.errors import ConfigError, check_positive_int


@MODELS.register_module()
class UDADataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` that also takes batches of named branches.

    A batch from :class:`~mmseg_saot.datasets.SourceTargetDataset` has
    ``inputs = {'source': [...], 'target': [...]}`` and ``data_samples`` alike; each
    branch is normalised, padded and stacked on its own (so each has its own
    ``(B, 3, H, W)`` tensor), and the result keeps the branch names. A plain batch
    (validation, or a single-domain training set) is preprocessed as by the parent.
    Arguments are those of ``SegDataPreProcessor``; ``size`` and ``size_divisor`` are
    checked when the model is built (a bad one otherwise fails in the first batch's
    padding, after the target set was pseudo-labelled).
    """

    def __init__(self,
                 mean: Optional[Sequence[Number]] = None,
                 std: Optional[Sequence[Number]] = None,
                 size: Optional[tuple] = None,
                 size_divisor: Optional[int] = None,
                 pad_val: Number = 0,
                 seg_pad_val: Number = 255,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 batch_augments: Optional[List[dict]] = None,
                 test_cfg: Optional[dict] = None) -> None:
        if (size is None) == (size_divisor is None):
            raise ConfigError(
                'UDADataPreProcessor: give exactly one of size and size_divisor (the training '
                f'batches are padded by it), got size={size!r}, size_divisor={size_divisor!r}; '
                'e.g. size_divisor=14 for a /14 ViT.')
        if size_divisor is not None:
            check_positive_int('UDADataPreProcessor', 'size_divisor', size_divisor)
        if size is not None and not (
                isinstance(size, Sequence) and len(size) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ConfigError('UDADataPreProcessor: size must be None or (height, width) in '
                              f'pixels, got {size!r}.')
        super().__init__(mean=mean, std=std, size=size, size_divisor=size_divisor,
                         pad_val=pad_val, seg_pad_val=seg_pad_val, bgr_to_rgb=bgr_to_rgb,
                         rgb_to_bgr=rgb_to_bgr, batch_augments=batch_augments,
                         test_cfg=test_cfg)

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        inputs = data['inputs']
        if not isinstance(inputs, dict):
            return super().forward(data, training)
        samples = data.get('data_samples') or {}
        branches = {
            name: super(UDADataPreProcessor, self).forward(
                dict(inputs=branch_inputs, data_samples=samples.get(name)), training)
            for name, branch_inputs in inputs.items()
        }
        return dict(inputs={name: out['inputs'] for name, out in branches.items()},
                    data_samples={name: out['data_samples'] for name, out in branches.items()})
