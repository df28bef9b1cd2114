"""A frozen timm ViT (DINOv2 by default) that yields patch-feature maps."""
import math
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import nn

from mmseg_saot.utils.digests import named_tensors_sha256
from mmseg_saot.utils.errors import ConfigError
from .timm_vit import create_timm_vit, refuse_pretrained_init_cfg, token_stride
from .vit_checkpoint import load_vit_weights

_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


# state_dict key (under the backbone's prefix) of the sha256 of the frozen ViT weights
# that a checkpoint without them was trained with
VIT_DIGEST_KEY = 'frozen_vit_sha256'


def _drop_vit_weights(module: nn.Module, state_dict: dict, prefix: str,
                      local_metadata: dict) -> None:
    """state_dict post-hook: leave the frozen ViT out of checkpoints, and record the
    digest of its weights instead (``VIT_DIGEST_KEY``)."""
    for key in [key for key in state_dict if key.startswith(prefix + 'vit.')]:
        del state_dict[key]
    state_dict[prefix + VIT_DIGEST_KEY] = module.vit_digest()


def _keep_own_vit_weights(module: nn.Module, state_dict: dict, prefix: str,
                          *args) -> None:
    """load_state_dict pre-hook (whatever ``save_frozen_weights``): a checkpoint without
    ViT weights keeps the module's own (so strict loading of head-only checkpoints
    works), with a warning if it was trained with other ViT weights than those. One that
    brings some ViT weights must bring them all: nothing is filled in (a strict load
    names the missing ones), as a ViT of another architecture would otherwise be
    completed with this one's weights."""
    saved_digest = state_dict.pop(prefix + VIT_DIGEST_KEY, None)
    if any(key.startswith(prefix + 'vit.') for key in state_dict):
        module._vit_digest = None  # the weights change: the next digest is computed anew
        return
    if saved_digest is not None and not torch.equal(saved_digest.cpu(), module.vit_digest()):
        warnings.warn(frozen_weights_mismatch('the state dict being loaded'))
    for key, value in module.vit.state_dict().items():
        state_dict.setdefault(f'{prefix}vit.{key}', value)


def frozen_weights_mismatch(what: str, weights_from: str = 'model.backbone') -> str:
    """The warning (or error) for ``what`` trained with other frozen ViT weights than
    ``weights_from`` (the config that built the model) gives."""
    return (f'{what} was trained with other frozen ViT weights than {weights_from} gives '
            '(their sha256 differs): the trained head would read features it never saw '
            'and predict wrongly. Set model.backbone.checkpoint (or pretrained) to the '
            'weights of the training run.')


@MODELS.register_module()
class DINOv2Backbone(BaseModule):
    """A frozen timm Vision Transformer returning patch-feature maps.

    Any timm ViT works: DINOv2 S/B/L/G/14 with or without registers
    (``vit_large_patch14_dinov2``, ``vit_large_patch14_reg4_dinov2``, ...)
    and DINO v1 ``vit_base_patch16_224.dino``. The ViT is frozen: its
    parameters never require gradients, it stays in eval mode under
    ``.train()``, :meth:`init_weights` never touches it, and
    ``TrainableOptimWrapperConstructor`` never hands it to an optimizer.

    Inputs of any size are zero-padded on the right and bottom to a multiple
    of the patch size; position embeddings are interpolated to the grid.

    Args:
        model_name (str): timm model name. Default: 'vit_large_patch14_dinov2'.
        out_indices (int | Sequence[int]): blocks whose outputs are returned.
            An int n means the last n blocks; a sequence lists block indices
            (negative ones count from the end), returned in block order whatever
            the order given (``[11, 5]`` gives block 5's map first). Default: 4.
        checkpoint (str, optional): local ``.safetensors``/``.pth`` file with a
            timm state dict, loaded strictly. Default: None.
        pretrained (bool): fetch timm's pretrained weights from its hub (needs
            network). Ignored when ``checkpoint`` is given. Default: False.
        norm (bool): apply the ViT's final LayerNorm to every returned block,
            as DINOv2's own dense evaluations do (for an average-pool ViT, whose
            final LayerNorm ``fc_norm`` follows the pool, that one, per token).
            Default: True.
        feature_dtype (str, optional): 'bf16' or 'fp16' runs the ViT under
            autocast; the returned maps are float32. Default: None (fp32).
        save_frozen_weights (bool): keep the frozen ViT's weights in
            ``state_dict()`` and so in every training checkpoint (1.2 GB for
            ViT-L). When False, checkpoints hold the trainable parts only and
            loading one keeps the ViT weights this module was built with
            (``checkpoint``/``pretrained``). Default: False.
        init_cfg (dict, optional): MMEngine init config; the ViT ignores it (and
            ``EMATeacherUDA`` keeps it out of a segmentor-level one). A ``Pretrained``
            one is refused: the ViT's weights come from ``checkpoint``.

    Shapes:
        input: (B, 3, H, W).
        output: tuple of ``len(out_indices)`` maps, each
        (B, embed_dim, ceil(H / p), ceil(W / p)) for patch size p.
    """

    #: Version of the code that turns weights and images into features; the disk
    #: feature caches are named by it (``FeatureStore``, ``EMATeacherUDA``'s
    #: ``feature_cache_dir``). Bump it whenever the features of some weights change
    #: (2: ``norm=True`` applies ``fc_norm`` per token on average-pool ViTs).
    feature_version = 2

    def __init__(self,
                 model_name: str = 'vit_large_patch14_dinov2',
                 out_indices: Union[int, Sequence[int]] = 4,
                 checkpoint: Optional[str] = None,
                 pretrained: bool = False,
                 norm: bool = True,
                 feature_dtype: Optional[str] = None,
                 save_frozen_weights: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        refuse_pretrained_init_cfg(init_cfg)
        super().__init__(init_cfg=init_cfg)
        if feature_dtype is not None and feature_dtype not in _AUTOCAST_DTYPES:
            raise ConfigError(f'DINOv2Backbone: feature_dtype must be one of '
                              f'{sorted(_AUTOCAST_DTYPES)} or None, got '
                              f'{feature_dtype!r}.')
        self.vit = create_timm_vit(model_name,
                                    pretrained and checkpoint is None)
        if checkpoint is not None:
            load_vit_weights(self.vit, checkpoint)
        elif not pretrained:
            print_log(f'DINOv2Backbone: {model_name} has RANDOM weights '
                      '(no checkpoint, pretrained=False)', logger='current')
        self.model_name = model_name
        self.out_indices = self._resolve_indices(out_indices)
        self.norm = norm
        self._norm_by_fc_norm = norm and self._final_norm_is_fc_norm(model_name)
        self.feature_dtype = feature_dtype
        self.patch_size = token_stride(self.vit, model_name)
        self.embed_dim = int(self.vit.embed_dim)
        self.vit.requires_grad_(False)
        self.vit.eval()
        self._vit_digest: Optional[torch.Tensor] = None  # see vit_digest
        if not save_frozen_weights:
            self.register_state_dict_post_hook(_drop_vit_weights)
        # also when saving them: a head-only checkpoint's digest is checked and popped
        self.register_load_state_dict_pre_hook(_keep_own_vit_weights)
        print_log(f'DINOv2Backbone: {model_name}, patch {self.patch_size}, '
                  f'{len(self.out_indices)} maps of {self.embed_dim} channels '
                  f'from blocks {self.out_indices}', logger='current')

    def _final_norm_is_fc_norm(self, model_name: str) -> bool:
        """Whether ``norm=True`` must apply the ViT's ``fc_norm`` itself: an average-pool
        ViT (``*_gap_*``, ``global_pool='avg'``) has its final LayerNorm after the pool
        and none over the tokens, so timm's ``norm=True`` would return them unnormalised.
        Without either LayerNorm, say that ``norm`` changes nothing."""
        if not isinstance(getattr(self.vit, 'norm', None), nn.Identity):
            return False  # the usual ViT: timm applies it
        fc_norm = getattr(self.vit, 'fc_norm', None)
        if fc_norm is None or isinstance(fc_norm, nn.Identity):
            warnings.warn(f'DINOv2Backbone: {model_name} has no final LayerNorm, so '
                          'norm=True changes nothing; set norm=False to say so.')
            return False
        print_log(f'DINOv2Backbone: {model_name} normalises after its average pool '
                  '(fc_norm); norm=True applies that LayerNorm to every token',
                  logger='current')
        return True

    def vit_digest(self) -> torch.Tensor:
        """sha256 of the frozen ViT's weights (names, shapes, dtypes, values) as a
        ``(32,)`` uint8 tensor; computed once (the ViT never changes after it is built,
        except through a state dict that carries its weights)."""
        if self._vit_digest is None:
            digest = named_tensors_sha256(self.vit.state_dict().items())
            self._vit_digest = torch.frombuffer(bytearray(digest), dtype=torch.uint8)
        return self._vit_digest.clone()

    def check_input_grid(self, preprocessor: nn.Module, test_cfg: Optional[dict],
                         owner: str) -> None:
        """Raise a ConfigError if the inputs would not cover whole patches.

        The backbone pads an input to whole ``p``-pixel patches, so its grid covers more
        than the image; the head's logits are then stretched over the unpadded image,
        shifting every prediction (by up to ``p`` pixels at the far edge) and training
        on misaligned labels. The preprocessor's padding (``size_divisor``, or ``size``,
        for training and in its ``test_cfg``) and a sliding window's ``crop_size``
        must be multiples of ``p``. Checked when the model is built, e.g. after swapping
        a /16 ViT's config to a /14 one.

        Args:
            preprocessor: the segmentor's data preprocessor.
            test_cfg: the segmentor's ``test_cfg`` (``mode``, ``crop_size``).
            owner: the segmentor's name, for the message.
        """
        patch = self.patch_size
        problems = []

        def check(where: str, size, size_divisor) -> None:
            if size_divisor is not None and size_divisor % patch:
                problems.append(f'{where}.size_divisor={size_divisor}')
            if size is not None and any(v % patch for v in size):
                problems.append(f'{where}.size={tuple(size)}')

        check('model.data_preprocessor', getattr(preprocessor, 'size', None),
              getattr(preprocessor, 'size_divisor', None))
        padding = getattr(preprocessor, 'test_cfg', None) or {}
        check('model.data_preprocessor.test_cfg', padding.get('size'),
              padding.get('size_divisor'))
        test_cfg = test_cfg or {}
        crop = test_cfg.get('mode') == 'slide' and test_cfg.get('crop_size')
        if crop and any(v % patch for v in crop):
            problems.append(f'model.test_cfg.crop_size={tuple(crop)}')
        if not crop and padding.get('size') is None and padding.get('size_divisor') is None:
            raise ConfigError(
                f'{owner}: model.data_preprocessor.test_cfg pads no test image (MMSeg then '
                'stacks them as they are), so an image that is not a whole number of '
                f'{patch}-px patches of {self.model_name} would get predictions shifted '
                f'against it; set model.data_preprocessor.test_cfg=dict(size_divisor={patch}).')
        if problems:
            raise ConfigError(
                f'{owner}: {", ".join(problems)} is not a multiple of the patch size of '
                f'{self.model_name} ({patch} px): its feature grid would cover padding '
                f'and the predictions would be shifted against the image. Use multiples of '
                f'{patch} (e.g. size_divisor={patch}).')

    def check_normalisation(self, preprocessor: nn.Module, owner: str) -> None:
        """Warn if the preprocessor normalises otherwise than the ViT was trained: a
        swapped timm model (CLIP, SigLIP, EVA02: other mean and std) would read inputs
        at another scale through the base config's ImageNet statistics."""
        expected = getattr(self.vit, 'pretrained_cfg', None) or {}
        mean, std = getattr(preprocessor, 'mean', None), getattr(preprocessor, 'std', None)
        if 'mean' not in expected or 'std' not in expected or mean is None or std is None:
            return
        want_mean = torch.tensor(expected['mean'], dtype=torch.float64) * 255
        want_std = torch.tensor(expected['std'], dtype=torch.float64) * 255
        have_mean, have_std = mean.detach().double().flatten(), std.detach().double().flatten()
        if have_mean.shape != want_mean.shape or have_std.shape != want_std.shape:
            return
        if (torch.allclose(have_mean, want_mean, rtol=0.02, atol=0.5)
                and torch.allclose(have_std, want_std, rtol=0.02, atol=0.5)):
            return
        warnings.warn(
            f'{owner}: model.data_preprocessor normalises with mean={_rounded(have_mean)}, '
            f'std={_rounded(have_std)}, but {self.model_name} was trained with '
            f'mean={_rounded(want_mean)}, std={_rounded(want_std)} (timm pretrained_cfg): '
            'its features would be those of inputs at another scale. Set '
            'model.data_preprocessor.mean and std to these (unless your checkpoint was '
            'trained otherwise).')

    def check_head(self, head: nn.Module, owner: str) -> None:
        """Raise a ConfigError if ``head`` does not take this backbone's maps.

        A swapped ``model_name`` (ViT-B: 768 channels, ViT-L: 1024) needs the head's
        ``in_channels`` to follow; checked when the model is built, not at the first
        forward after the whole target set was pseudo-labelled.

        Args:
            head: a decode head with ``in_channels`` and ``in_index`` (lists or ints).
            owner: the segmentor's name, for the message.
        """
        in_channels = getattr(head, 'in_channels', None)
        in_index = getattr(head, 'in_index', None)
        if in_channels is None or in_index is None:
            return
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        in_index = [in_index] if isinstance(in_index, int) else list(in_index)
        num_maps = len(self.out_indices)
        bad_index = [i for i in in_index if not -num_maps <= i < num_maps]
        if bad_index or any(c != self.embed_dim for c in in_channels):
            # fix what is wrong: indices past the maps -> take every map
            fixed_index = list(range(num_maps)) if bad_index else in_index
            fix = f'model.decode_head.in_channels={[self.embed_dim] * len(fixed_index)}'
            if bad_index:
                fix += f' model.decode_head.in_index={fixed_index}'
            raise ConfigError(
                f'{owner}: the decode head takes in_index={in_index} with in_channels='
                f'{in_channels}, but the backbone {self.model_name} gives {num_maps} '
                f'maps of {self.embed_dim} channels; set {fix} (or other indices within '
                f'0..{num_maps - 1}, one channel count each).')

    def _resolve_indices(
            self, out_indices: Union[int, Sequence[int]]) -> List[int]:
        """Turn ``out_indices`` into sorted non-negative block indices."""
        depth = len(self.vit.blocks)
        if not _is_int(out_indices) and not (
                isinstance(out_indices, Sequence) and not isinstance(out_indices, str)
                and len(out_indices) and all(_is_int(i) for i in out_indices)):
            raise ConfigError(f'DINOv2Backbone: out_indices must be an integer n (the last n '
                              f'blocks) or a list of block indices, got {out_indices!r}.')
        if isinstance(out_indices, int):
            if not 1 <= out_indices <= depth:
                raise ConfigError(f'DINOv2Backbone: out_indices={out_indices} '
                                  f'must be in [1, {depth}] (last n blocks).')
            return list(range(depth - out_indices, depth))
        resolved = []
        for index in out_indices:
            if not -depth <= index < depth:
                raise ConfigError(f'DINOv2Backbone: block index {index} is out '
                                  f'of range for a {depth}-block ViT.')
            resolved.append(index % depth)
        if len(set(resolved)) != len(resolved):
            raise ConfigError(f'DINOv2Backbone: out_indices {list(out_indices)}'
                              ' name a block twice.')
        return sorted(resolved)

    def init_weights(self) -> None:
        """Leave the (loaded or timm-initialised) ViT weights untouched."""
        self._is_init = True

    def train(self, mode: bool = True) -> 'DINOv2Backbone':
        """Switch the module's mode while the ViT stays in eval mode."""
        super().train(mode)
        self.vit.eval()
        return self

    def padded_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """``(H, W)`` rounded up to whole patches: the input size the maps cover."""
        return tuple(math.ceil(side / self.patch_size) * self.patch_size for side in size)

    def _pad_to_patch_multiple(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-pad (B, C, H, W) on the right/bottom to multiples of p."""
        height, width = images.shape[-2:]
        padded_height, padded_width = self.padded_size((height, width))
        pad_h, pad_w = padded_height - height, padded_width - width
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        return images

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Extract patch-feature maps.

        Args:
            images (Tensor): normalised images, (B, 3, H, W).

        Returns:
            tuple[Tensor]: one (B, D, ceil(H/p), ceil(W/p)) map per index.
        """
        images = self._pad_to_patch_multiple(images)
        dtype = _AUTOCAST_DTYPES.get(self.feature_dtype)
        with torch.no_grad(), torch.autocast(device_type=images.device.type,
                                             dtype=dtype,
                                             enabled=dtype is not None):
            maps = self.vit.forward_intermediates(
                images, indices=self.out_indices,
                norm=self.norm and not self._norm_by_fc_norm,
                output_fmt='NCHW', intermediates_only=True)
            if self._norm_by_fc_norm:  # over channels, token by token
                maps = [self.vit.fc_norm(m.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                        for m in maps]
        return tuple(feature_map.float() for feature_map in maps)


def check_segmentor_parts(model: nn.Module) -> None:
    """Run the backbone's checks of the parts around it (the head's ``in_channels``,
    the input grid; :class:`DINOv2Backbone`'s, or any backbone's with those methods) on
    a segmentor: ``EMATeacherUDA`` runs them when it is built, the tools on MMSeg's own
    segmentors (``EncoderDecoder``); wrappers (DDP, the TTA model) are looked through.
    Nothing for a backbone without them.

    Raises:
        ConfigError: as :meth:`DINOv2Backbone.check_head` and
            :meth:`DINOv2Backbone.check_input_grid`.
    """
    while isinstance(getattr(model, 'module', None), nn.Module):
        model = model.module
    backbone = getattr(model, 'backbone', None)
    owner = type(model).__name__
    head = getattr(model, 'decode_head', None)
    if (hasattr(backbone, 'check_head') and getattr(model, 'neck', None) is None
            and isinstance(head, nn.Module)):
        backbone.check_head(head, owner)
    if hasattr(backbone, 'check_input_grid'):
        backbone.check_input_grid(getattr(model, 'data_preprocessor', None),
                                  getattr(model, 'test_cfg', None), owner)
    if hasattr(backbone, 'check_normalisation'):
        backbone.check_normalisation(getattr(model, 'data_preprocessor', None), owner)
    _check_segmentor_init_cfg(model, backbone, owner)


def _check_segmentor_init_cfg(model: nn.Module, backbone: nn.Module, owner: str) -> None:
    """Refuse a segmentor-level ``init_cfg`` (other than ``Pretrained``) on a segmentor
    that does not keep its frozen backbone out of it: MMEngine applies it to every
    submodule, so ``init_weights`` would re-initialise the loaded ViT (``EMATeacherUDA``
    restores it; MMSeg's ``EncoderDecoder`` does not)."""
    init_cfg = getattr(model, 'init_cfg', None)
    if (not init_cfg or not isinstance(backbone, DINOv2Backbone)
            or getattr(model, 'keeps_frozen_backbone_on_init', False)):
        return
    kinds = [c.get('type') for c in (init_cfg if isinstance(init_cfg, list) else [init_cfg])
             if isinstance(c, dict)]
    if kinds and all(kind == 'Pretrained' for kind in kinds):
        return
    raise ConfigError(
        f'{owner}: model.init_cfg={init_cfg!r} is applied by MMEngine to every submodule, '
        f'the frozen ViT of model.backbone ({backbone.model_name}) included, and would '
        're-initialise its loaded weights. Give it to the trained parts instead '
        '(model.decode_head.init_cfg), or use EMATeacherUDA, which keeps the frozen '
        'backbone out of it.')


def _rounded(values: torch.Tensor) -> List[float]:
    return [round(float(v), 3) for v in values]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
