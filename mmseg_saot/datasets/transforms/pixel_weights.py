"""Per-pixel loss weights through the pipeline: load them, transform them, pack them."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS
from PIL import Image

from mmseg_saot.models.decode_heads.mlp_head import PIXEL_WEIGHT_KEY


@TRANSFORMS.register_module()
class LoadPixelWeights(BaseTransform):
    """Load a uint8 weight map (``round(255 * w)``) from ``results['pixel_weight_path']``.

    It is stored as ``results['gt_pixel_weight']`` (uint8, ``(H, W)``) and added to
    ``seg_fields``, so MMSeg's geometric transforms (Resize, RandomCrop, RandomFlip)
    move it with the label map (nearest interpolation).

    Raises:
        ValueError: the weight map and the label map differ in size (names both files).
    """

    def transform(self, results: dict) -> dict:
        path = results['pixel_weight_path']
        weight = np.asarray(Image.open(path))
        if weight.ndim != 2 or weight.dtype != np.uint8:
            raise ValueError(f'{path}: expected a single-channel 8-bit weight map, got '
                             f'{weight.dtype} of shape {weight.shape}.')
        seg = results.get('gt_seg_map')
        if seg is not None and seg.shape != weight.shape:
            raise ValueError(f'{path} is {weight.shape} but its label map '
                             f'{results.get("seg_map_path")} is {seg.shape}.')
        results['gt_pixel_weight'] = weight
        results.setdefault('seg_fields', []).append('gt_pixel_weight')
        return results


@TRANSFORMS.register_module()
class PackSegInputsWithWeights(PackSegInputs):
    """``PackSegInputs`` that also packs ``gt_pixel_weight`` as float weights in [0, 1].

    The data sample gets ``gt_pixel_weight`` (``PixelData``, ``(1, H, W)``), which
    :class:`~mmseg_saot.models.decode_heads.MLPHead` multiplies into its loss.

    Raises:
        ValueError: the weight map and the label map differ in size (names both files).
    """

    def transform(self, results: dict) -> dict:
        weight, seg = results.get('gt_pixel_weight'), results.get('gt_seg_map')
        if weight is not None and seg is not None and weight.shape != seg.shape:
            # LoadPixelWeights checks this only when the label map was loaded before it
            raise ValueError(f'{results.get("pixel_weight_path")} is {weight.shape} but its '
                             f'label map {results.get("seg_map_path")} is {seg.shape} (after '
                             'the pipeline\'s transforms).')
        packed = super().transform(results)
        if 'gt_pixel_weight' in results:
            weight = torch.from_numpy(np.ascontiguousarray(results['gt_pixel_weight']))
            packed['data_samples'].set_data(
                {PIXEL_WEIGHT_KEY: PixelData(data=weight[None].float() / 255.0)})
        return packed
