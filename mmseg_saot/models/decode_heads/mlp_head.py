"""A per-pixel MLP decode head over frozen patch features."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import CrossEntropyLoss
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from torch import Tensor, nn

from mmseg_saot.utils.errors import ConfigError, check_number, check_positive_int

PIXEL_WEIGHT_KEY = 'gt_pixel_weight'


@torch.no_grad()
def pixel_accuracy(seg_logits: Tensor, seg_label: Tensor, ignore_index: int) -> Tensor:
    """Top-1 accuracy (%) over the labelled pixels (0 if there are none).

    mmseg's ``accuracy`` with topk=1, with the argmax as a running maximum over the
    classes: on a CPU, a top-k or argmax across the channel dimension of
    ``(8, 19, 224, 448)`` logits costs 2-4x as much.

    Args:
        seg_logits: ``(B, C, H, W)``.
        seg_label: ``(B, H, W)``.
    """
    best, predicted = seg_logits[:, 0].clone(), torch.zeros_like(seg_label)
    for cls in range(1, seg_logits.shape[1]):
        better = seg_logits[:, cls] > best
        best = torch.where(better, seg_logits[:, cls], best)
        predicted.masked_fill_(better, cls)
    valid = seg_label != ignore_index
    correct = (predicted == seg_label) & valid
    return correct.sum().float() * 100.0 / valid.sum().clamp(min=1)


@MODELS.register_module()
class MLPHead(BaseDecodeHead):
    """Per-pixel MLP over one or several feature maps.

    Each selected map is projected to ``channels`` by a 1x1 convolution
    (a per-pixel linear layer), resized to the first map's grid, the
    projections are concatenated and fused by ``num_layers`` 1x1
    conv-norm-act layers, and a 1x1 classifier gives the logits.

    Per-pixel loss weights: a data sample carrying ``gt_pixel_weight``
    (a ``PixelData`` whose ``data`` is (1, H, W), e.g. pseudo-label
    confidences) scales each pixel's loss; samples without it weigh 1.
    Pixels labelled ``ignore_index`` never contribute. Only cross entropy weighs pixels:
    another loss in ``loss_decode`` is a ConfigError when weights come.

    Args:
        in_channels (int | Sequence[int]): channels of each selected map.
        channels (int): width of the MLP. Default: 256.
        num_classes (int): number of classes. Default: 19.
        in_index (int | Sequence[int]): which backbone outputs to use.
            Default: (0,).
        num_layers (int): fusion layers after the concatenation. Default: 1.
        dropout_ratio (float): dropout before the classifier. Default: 0.1.
        norm_cfg (dict, optional): normalisation in the MLP.
            Default: ``dict(type='SyncBN')`` (reverted to BN when not
            distributed).
        act_cfg (dict): activation. Default: ``dict(type='GELU')``.
        loss_decode (dict | list[dict]): loss config(s).
            Default: cross entropy.
        ignore_index (int): label to ignore. Default: 255.
        align_corners (bool): for resizing. Default: False.
        sampler (dict, optional): mmseg pixel sampler. Default: None.
        init_cfg (dict, optional): init config.

    Shapes:
        input: tuple of maps (B, in_channels[i], h_i, w_i).
        output: logits (B, num_classes, h_0, w_0).
    """

    #: reads ``gt_pixel_weight`` (what :class:`EMATeacherUDA` requires of its head)
    weighs_pixels = True

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 channels: int = 256,
                 num_classes: int = 19,
                 in_index: Union[int, Sequence[int]] = (0, ),
                 num_layers: int = 1,
                 dropout_ratio: float = 0.1,
                 norm_cfg: Optional[dict] = dict(type='SyncBN'),
                 act_cfg: dict = dict(type='GELU'),
                 loss_decode: Union[dict, List[dict]] = dict(
                     type='CrossEntropyLoss', use_sigmoid=False,
                     loss_weight=1.0),
                 ignore_index: int = 255,
                 align_corners: bool = False,
                 sampler: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        in_channels = ([in_channels] if isinstance(in_channels, int) else
                       list(in_channels))
        in_index = [in_index] if isinstance(in_index, int) else list(in_index)
        for width in in_channels:
            check_positive_int('MLPHead', 'in_channels', width)
        check_positive_int('MLPHead', 'channels', channels)
        check_positive_int('MLPHead', 'num_classes', num_classes)
        check_number('MLPHead', 'dropout_ratio', dropout_ratio, at_least=0.0, below=1.0)
        if len(in_channels) != len(in_index):
            raise ConfigError(
                f'MLPHead: in_channels {in_channels} and in_index {in_index} '
                'must have the same length (one entry per feature map).')
        check_positive_int('MLPHead', 'num_layers', num_layers)
        super().__init__(
            in_channels=in_channels, channels=channels,
            num_classes=num_classes, in_index=in_index,
            input_transform='multiple_select', dropout_ratio=dropout_ratio,
            norm_cfg=norm_cfg, act_cfg=act_cfg, loss_decode=loss_decode,
            ignore_index=ignore_index, align_corners=align_corners,
            sampler=sampler, init_cfg=init_cfg)
        self.projections = nn.ModuleList(
            nn.Conv2d(width, channels, kernel_size=1) for width in in_channels)
        self.fusion = nn.Sequential(*[
            ConvModule(channels * len(in_channels) if layer == 0 else channels,
                       channels, kernel_size=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg) for layer in range(num_layers)
        ])

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Per-pixel logits on the first selected map's grid."""
        beyond = [i for i in self.in_index if not -len(inputs) <= i < len(inputs)]
        if beyond:
            raise ConfigError(
                f'MLPHead: in_index={self.in_index} reads map {beyond[0]}, but the backbone '
                f'gives {len(inputs)} maps; set model.decode_head.in_index (and in_channels) '
                'to maps it gives, or let it give more (model.backbone.out_indices).')
        feature_maps = self._transform_inputs(inputs)
        widths = [feature_map.shape[1] for feature_map in feature_maps]
        if widths != list(self.in_channels):
            raise ConfigError(
                f'MLPHead: the maps in_index={self.in_index} have {widths} channels but '
                f'in_channels is {self.in_channels}; set model.decode_head.in_channels='
                f'{widths} (the backbone\'s embed_dim per map).')
        grid = feature_maps[0].shape[2:]
        projected = [
            resize(projection(feature_map), size=grid, mode='bilinear',
                   align_corners=self.align_corners)
            for projection, feature_map in zip(self.projections, feature_maps)
        ]
        return self.cls_seg(self.fusion(torch.cat(projected, dim=1)))

    @staticmethod
    def _stack_pixel_weights(batch_data_samples: SampleList,
                             like: Tensor) -> Optional[Tensor]:
        """Stack per-pixel weights (B, H, W); None if no sample has any."""
        if not any(PIXEL_WEIGHT_KEY in sample for sample in batch_data_samples):
            return None
        weights = []
        for sample, label in zip(batch_data_samples, like):
            if PIXEL_WEIGHT_KEY in sample:
                weight = sample.get(PIXEL_WEIGHT_KEY).data.to(like.device)
                pad_h = label.shape[-2] - weight.shape[-2]
                pad_w = label.shape[-1] - weight.shape[-1]
                if pad_h < 0 or pad_w < 0 or weight.dim() != 3:
                    raise ValueError(
                        f'MLPHead: gt_pixel_weight {tuple(weight.shape)} '
                        f'does not fit gt_sem_seg {tuple(label.shape)}.')
                # the preprocessor pads labels bottom/right (with ignore):
                # pad the weights alike, with zero weight
                weight = F.pad(weight.float(), (0, pad_w, 0, pad_h), value=0.0)
                weights.append(weight.reshape(label.shape[-2:]))
            else:
                weights.append(label.new_ones(label.shape[-2:],
                                              dtype=torch.float))
        return torch.stack(weights)

    def loss_by_feat(self, seg_logits: Tensor,
                     batch_data_samples: SampleList) -> dict:
        """Segmentation losses with per-pixel weights.

        Same as :meth:`BaseDecodeHead.loss_by_feat`, except that the
        samples' ``gt_pixel_weight`` multiplies the pixel sampler's weight.
        """
        seg_label = self._stack_batch_gt(batch_data_samples)
        seg_logits = resize(seg_logits, size=seg_label.shape[2:],
                            mode='bilinear', align_corners=self.align_corners)
        seg_weight = (self.sampler.sample(seg_logits, seg_label)
                      if self.sampler is not None else None)
        pixel_weight = self._stack_pixel_weights(batch_data_samples,
                                                 seg_label)
        losses_decode = (self.loss_decode if isinstance(
            self.loss_decode, nn.ModuleList) else [self.loss_decode])
        if pixel_weight is not None:
            _check_losses_weigh_pixels(losses_decode)
            seg_weight = (pixel_weight if seg_weight is None else
                          seg_weight * pixel_weight)
        seg_label = seg_label.squeeze(1)
        loss = dict()
        for loss_decode in losses_decode:
            value = loss_decode(seg_logits, seg_label, weight=seg_weight,
                                ignore_index=self.ignore_index)
            name = loss_decode.loss_name
            loss[name] = loss[name] + value if name in loss else value
        loss['acc_seg'] = pixel_accuracy(seg_logits, seg_label, self.ignore_index)
        return loss


def _check_losses_weigh_pixels(losses) -> None:
    """Raise a ConfigError for a loss that cannot take per-pixel weights (MMSeg's Dice
    fails an assertion on them, Lovasz drops them): only cross entropy weighs pixels."""
    for loss in losses:
        if not isinstance(loss, CrossEntropyLoss):
            raise ConfigError(
                f'MLPHead: loss_decode {type(loss).__name__} cannot weigh pixels, and these '
                'samples carry per-pixel weights (gt_pixel_weight: pseudo-label confidences); '
                'use CrossEntropyLoss for the decode head of a run that trains on them.')
