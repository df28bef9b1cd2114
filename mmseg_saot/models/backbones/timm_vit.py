"""The timm ViT inside :class:`~.dinov2.DINOv2Backbone`: building it (offline-aware),
refusing what it cannot be, and its pixels per token."""
from torch import nn

from mmseg_saot.utils.build_errors import did_you_mean
from mmseg_saot.utils.config_types import has_type
from mmseg_saot.utils.errors import ConfigError, WeightsError
from .hub_access import hub_unreachable


def create_timm_vit(model_name: str, pretrained: bool) -> nn.Module:
    """Create a timm ViT with dynamic position embeddings, without a head."""
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a dependency
        raise ImportError('DINOv2Backbone needs timm >= 1.0.20: '
                          '`pip install "timm>=1.0.20"`') from err
    if not timm.is_model(model_name):
        hint = did_you_mean(model_name.split('.')[0], timm.list_models())
        raise ConfigError(
            f'DINOv2Backbone: timm has no model "{model_name}".{hint} Use a timm '
            'ViT name such as vit_small_patch14_dinov2, '
            'vit_large_patch14_reg4_dinov2 or vit_base_patch16_224.dino '
            '(see timm.list_models("*dinov2*")).')
    architecture, _, tag = model_name.partition('.')
    # timm.is_model ignores the tag; create_model then raised "Invalid pretrained tag"
    tags = [name.partition('.')[2] for name in timm.list_pretrained(f'{architecture}.*')]
    if tag and tag not in tags:
        known = ', '.join(f'{architecture}.{t}' for t in tags) or f'{architecture} (untagged)'
        raise ConfigError(
            f'DINOv2Backbone: model_name="{model_name}": timm has no pretrained tag "{tag}" '
            f'for {architecture}; use one of {known}, or the name without a tag.')
    unreachable = hub_unreachable(model_name) if pretrained else None
    if unreachable:
        raise WeightsError(_no_pretrained_weights(model_name, unreachable))
    try:
        vit = timm.create_model(model_name, pretrained=pretrained,
                                num_classes=0, dynamic_img_size=True)
    except TypeError as err:
        if 'dynamic_img_size' not in str(err):
            raise
        raise ConfigError(
            f'DINOv2Backbone: timm model "{model_name}" takes no dynamic_img_size (it is '
            'not a ViT, or a ViT of one input size only, such as BEiT or CaiT); the '
            'backbone needs a timm ViT such as vit_small_patch14_dinov2 or '
            'vit_base_patch16_224.dino (see timm.list_models("vit_*")).') from err
    except Exception as err:  # hub unreachable, auth, missing file...
        if not pretrained:
            raise
        raise WeightsError(_no_pretrained_weights(model_name, str(err))) from err
    if not hasattr(vit, 'forward_intermediates'):
        raise ConfigError(f'DINOv2Backbone: timm model "{model_name}" has no '
                          'forward_intermediates(); use a ViT.')
    if not (isinstance(getattr(vit, 'blocks', None), nn.Module)
            and isinstance(getattr(vit, 'patch_embed', None), nn.Module)):
        raise ConfigError(f'DINOv2Backbone: timm model "{model_name}" is not a plain ViT '
                          '(no patch_embed and single sequence of blocks: a hierarchical '
                          'model such as Swin); use a timm ViT such as '
                          'vit_small_patch14_dinov2 (see timm.list_models("vit_*")).')
    return vit


def _no_pretrained_weights(model_name: str, reason: str) -> str:
    return (f'DINOv2Backbone: could not fetch pretrained weights for "{model_name}" from the '
            f'timm/Hugging Face hub ({reason}). Without network access, pass a local file: '
            'model.backbone.checkpoint=/path/to/weights.safetensors (and pretrained=False).')


def refuse_pretrained_init_cfg(init_cfg) -> None:
    """ConfigError for ``init_cfg=dict(type='Pretrained', ...)``, MMSeg's usual way to
    give backbone weights: the frozen ViT never reads it (a missing file passed too)."""
    for entry in init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]:
        if has_type(entry, 'Pretrained'):
            raise ConfigError(
                'DINOv2Backbone: init_cfg=Pretrained is not read (the frozen ViT would keep '
                'its initial weights); give the weights as model.backbone.checkpoint='
                f'{entry.get("checkpoint", "<file>")!r} (a .pth or .safetensors file) and '
                'drop model.backbone.init_cfg.')


def token_stride(vit: nn.Module, model_name: str) -> int:
    """Pixels per token of ``vit``: the patch size, times the stride of a hybrid ViT's
    CNN stem (``vit_base_r50_s16_224``: patch 1, 16 px per token)."""
    embed = vit.patch_embed
    ratio = embed.feat_ratio(as_scalar=False) if hasattr(embed, 'feat_ratio') else None
    ratio = tuple(ratio) if ratio is not None else tuple(embed.patch_size)
    if len(set(ratio)) != 1:
        raise ConfigError(f'DINOv2Backbone: timm model "{model_name}" has tokens of '
                          f'{ratio[0]} x {ratio[1]} px; the backbone needs square ones.')
    return int(ratio[0])
