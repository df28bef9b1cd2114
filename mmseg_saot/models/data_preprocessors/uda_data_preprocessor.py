"""Preprocess the source and target branches of a UDA batch separately."""
from typing import Any, Dict

from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS


@MODELS.register_module()
class UDADataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` that also takes batches of named branches.

    A batch from :class:`~mmseg_saot.datasets.SourceTargetDataset` has
    ``inputs = {'source': [...], 'target': [...]}`` and ``data_samples`` alike; each
    branch is normalised, padded and stacked on its own (so each has its own
    ``(B, 3, H, W)`` tensor), and the result keeps the branch names. A plain batch
    (validation, or a single-domain training set) is preprocessed as by the parent.
    Arguments are those of ``SegDataPreProcessor``.
    """

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
