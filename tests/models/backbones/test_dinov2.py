import warnings

import pytest
import torch
from mmseg.registry import MODELS
from safetensors.torch import save_file

from mmseg_saot.models.backbones import DINOv2Backbone
from mmseg_saot.utils.errors import ConfigError, WeightsError

VIT_S = 'vit_small_patch14_dinov2'
VIT_B16 = 'vit_base_patch16_224.dino'


@pytest.fixture(scope='module')
def vit_s() -> DINOv2Backbone:
    torch.manual_seed(0)
    return DINOv2Backbone(model_name=VIT_S, out_indices=2)


def test_frozen_no_grad_and_eval_under_train(vit_s):
    vit_s.train()
    assert not vit_s.vit.training
    assert all(not p.requires_grad for p in vit_s.parameters())
    maps = vit_s(torch.rand(1, 3, 28, 28, requires_grad=True))
    assert not maps[0].requires_grad


@pytest.mark.parametrize('model_name,size,dim,grid', [
    (VIT_S, (50, 75), 384, (4, 6)),  # 50/14 -> 4, 75/14 -> 6 patches
    (VIT_B16, (40, 50), 768, (3, 4)),  # 40/16 -> 3, 50/16 -> 4 patches
])
def test_output_shapes_for_sizes_off_the_patch_grid(model_name, size, dim,
                                                    grid):
    backbone = (DINOv2Backbone(model_name=model_name, out_indices=3))
    maps = backbone(torch.rand(2, 3, *size))
    assert isinstance(maps, tuple) and len(maps) == 3
    for feature_map in maps:
        assert feature_map.shape == (2, dim, *grid)
        assert feature_map.dtype == torch.float32


def test_out_indices_forms_agree(vit_s):
    images = torch.rand(1, 3, 42, 56)
    last_two = vit_s(images)
    explicit = DINOv2Backbone(model_name=VIT_S, out_indices=[10, 11])
    negative = DINOv2Backbone(model_name=VIT_S, out_indices=[-1, -2])
    explicit.vit.load_state_dict(vit_s.vit.state_dict())
    negative.vit.load_state_dict(vit_s.vit.state_dict())
    assert explicit.out_indices == negative.out_indices == [10, 11]
    for a, b, c in zip(last_two, explicit(images), negative(images)):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
    # an earlier block gives different features
    first = DINOv2Backbone(model_name=VIT_S, out_indices=[0])
    first.vit.load_state_dict(vit_s.vit.state_dict())
    assert not torch.allclose(first(images)[0], last_two[0])


@pytest.mark.parametrize('bad', [0, 13, [12], [3, 3], 'abc', [1, 'x'], [], True])
def test_bad_out_indices_are_explained(bad):
    with pytest.raises(ValueError, match='out_indices|block index'):
        DINOv2Backbone(model_name=VIT_S, out_indices=bad)


def test_missing_checkpoint_path_is_a_clear_error(tmp_path):
    missing = tmp_path / 'nope.safetensors'
    with pytest.raises(WeightsError, match='nope.safetensors.*does not exist'):
        DINOv2Backbone(model_name=VIT_S, checkpoint=str(missing))
    with pytest.raises(WeightsError, match=f'checkpoint "{tmp_path}" is a folder'):
        DINOv2Backbone(model_name=VIT_S, checkpoint=str(tmp_path))


@pytest.mark.parametrize('name', ['vit.pth', 'vit.safetensors'])
def test_a_truncated_checkpoint_is_named_with_the_fix(tmp_path, name):
    from mmseg_saot.models.backbones.vit_checkpoint import read_state_dict
    path = tmp_path / name
    if name.endswith('.pth'):
        torch.save({'w': torch.zeros(1000)}, path)
    else:
        from safetensors.torch import save_file
        save_file({'w': torch.zeros(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(WeightsError) as info:
        read_state_dict(str(path))
    message = str(info.value)
    assert message.startswith(f'DINOv2Backbone: "{path}" is not a readable checkpoint (')
    assert message.endswith('a truncated download must be fetched again.')
    assert 'this is a common error' not in message and 'weights_only=False' not in message


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match='timm has no model'):
        DINOv2Backbone(model_name='vit_tiny_patch99_nothing')


def test_a_misspelt_model_name_gets_the_closest_timm_name():
    with pytest.raises(ConfigError, match='timm has no model "vit_smal_patch14_dinov2". Did '
                       "you mean 'vit_small_patch14_dinov2'\\?"):
        DINOv2Backbone(model_name='vit_smal_patch14_dinov2')


def test_a_timm_model_that_is_not_a_vit_is_a_clear_error():
    with pytest.raises(ConfigError, match='"resnet18" takes no dynamic_img_size'):
        DINOv2Backbone(model_name='resnet18', pretrained=False)


@pytest.mark.parametrize('init_cfg', [
    dict(type='Pretrained', checkpoint='/nonexistent/dinov2.pth'),
    [dict(type='mmseg.Pretrained', checkpoint='/nonexistent/dinov2.pth')]])
def test_pretrained_init_cfg_is_refused_with_the_option_that_works(init_cfg):
    # MMSeg's usual way to give backbone weights: ignored, a missing file included, and
    # the run trained on random features
    with pytest.raises(ConfigError, match=r"init_cfg=Pretrained is not read .* "
                       r"model.backbone.checkpoint='/nonexistent/dinov2.pth'"):
        DINOv2Backbone(model_name=VIT_S, init_cfg=init_cfg)


def test_a_hierarchical_model_is_named_not_a_traceback():
    # Swin takes dynamic_img_size and has forward_intermediates, then failed on .blocks
    with pytest.raises(ConfigError, match='"swin_tiny_patch4_window7_224" is not a plain ViT'):
        DINOv2Backbone(model_name='swin_tiny_patch4_window7_224', pretrained=False)


def test_a_hybrid_vits_patch_is_its_token_stride():
    # a ResNet stem before 8-px patches: 32 px per token. The backbone took patch 8,
    # padded to multiples of 8 and the token grid did not fit the image.
    backbone = DINOv2Backbone(model_name='vit_tiny_r_s16_p8_224', out_indices=1)
    assert backbone.patch_size == 32
    assert backbone(torch.rand(1, 3, 230, 450))[0].shape == (1, 192, 8, 15)


def test_a_non_vit_with_pretrained_weights_does_not_blame_the_hub(monkeypatch):
    import timm
    calls = []

    def create_model(name, pretrained=False, **kwargs):
        # what timm raises for a non-ViT, before it would fetch any weights
        calls.append((name, pretrained))
        raise TypeError("ResNet.__init__() got an unexpected keyword argument "
                        "'dynamic_img_size'")

    # never the hub: timm's model factory is the stub above, and the Hugging Face
    # client is offline should anything get past it
    monkeypatch.setattr(timm, 'create_model', create_model)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ConfigError, match='"resnet18" takes no dynamic_img_size'):
        DINOv2Backbone(model_name='resnet18', pretrained=True)  # stubbed: no download
    assert calls == [('resnet18', True)]  # the stub, not timm, was asked for weights


def assert_loads_as(vit_s, path):
    """A backbone built from ``path`` gives ``vit_s``'s features."""
    loaded = DINOv2Backbone(model_name=VIT_S, out_indices=2, checkpoint=str(path))
    images = torch.rand(1, 3, 28, 42)
    for a, b in zip(vit_s(images), loaded(images)):
        torch.testing.assert_close(a, b)


def vit_state(vit_s, prefix=''):
    return {prefix + k: v.clone() for k, v in vit_s.vit.state_dict().items()}


@pytest.mark.parametrize('suffix', ['.safetensors', '.pth'])
def test_local_weights_load_strictly(vit_s, tmp_path, suffix):
    path = tmp_path / f'w{suffix}'
    state = vit_state(vit_s)
    if suffix == '.pth':
        torch.save({'state_dict': state}, path)  # wrapped, as many files are
    else:
        save_file(state, str(path))
    assert_loads_as(vit_s, path)


def test_a_segmentor_checkpoint_gives_its_vit(vit_s, tmp_path):
    # a run saved with save_frozen_weights=True holds the ViT beside the heads: only
    # checkpoints whose every key had the prefix were read (a confusing key mismatch)
    path = tmp_path / 'iter_100.pth'
    state = vit_state(vit_s, prefix='backbone.vit.')
    state['decode_head.conv_seg.weight'] = torch.zeros(19, 8, 1, 1)
    torch.save({'meta': {}, 'state_dict': state}, path)
    assert_loads_as(vit_s, path)


def test_a_head_only_checkpoint_as_the_vit_weights_says_what_it_is(vit_s, tmp_path):
    # it listed 150 missing keys and advised to check model_name
    path = tmp_path / 'iter_100.pth'
    torch.save({'meta': {}, 'state_dict': {
        'backbone.frozen_vit_sha256': torch.zeros(32, dtype=torch.uint8),
        'decode_head.conv_seg.weight': torch.zeros(19, 8, 1, 1)}}, path)
    with pytest.raises(WeightsError, match=r'is a training checkpoint of the head alone .* '
                       r'Point model.backbone.checkpoint at the ViT weights file that run used'):
        DINOv2Backbone(model_name=VIT_S, checkpoint=str(path))


def test_weights_that_are_not_tensors_are_named(vit_s, tmp_path):
    # numpy arrays pass weights_only (numpy is allow-listed) and then failed in
    # load_state_dict with "expected torch.Tensor"
    path = tmp_path / 'w.pth'
    torch.save({k: v.numpy() for k, v in vit_state(vit_s).items()}, path)
    with pytest.raises(WeightsError, match=r'holds ndarray values, not tensors'):
        DINOv2Backbone(model_name=VIT_S, checkpoint=str(path))


def test_an_official_dinov2_checkpoint_loads(vit_s, tmp_path):
    # Meta's dinov2_vits14_pretrain.pth (the usual offline download) has a mask_token
    # timm drops: it failed strictly, blaming model_name
    path = tmp_path / 'dinov2_vits14_pretrain.pth'
    torch.save(dict(vit_state(vit_s), mask_token=torch.zeros(1, 384)), path)
    assert_loads_as(vit_s, path)


def test_key_mismatch_is_readable(vit_s, tmp_path):
    path = tmp_path / 'vit_s.safetensors'
    state = dict(vit_s.vit.state_dict())
    state.pop('norm.weight')
    state['extra.weight'] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(WeightsError) as info:
        DINOv2Backbone(model_name=VIT_S, checkpoint=str(path))
    message = str(info.value)
    assert 'missing keys: norm.weight' in message
    assert 'unexpected keys: extra.weight' in message


def test_wrong_architecture_names_shape_mismatch(vit_s, tmp_path):
    path = tmp_path / 'vit_s.safetensors'
    save_file(dict(vit_s.vit.state_dict()), str(path))
    with pytest.raises(WeightsError, match='shape mismatches'):
        DINOv2Backbone(model_name='vit_base_patch14_dinov2',
                       checkpoint=str(path))


def test_init_weights_keeps_loaded_weights(vit_s, tmp_path):
    path = tmp_path / 'w.safetensors'
    save_file(dict(vit_s.vit.state_dict()), str(path))
    segmentor = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='DINOv2Backbone', model_name=VIT_S,
                      out_indices=1, checkpoint=str(path)),
        decode_head=dict(type='MLPHead', in_channels=[384], channels=16,
                         num_classes=3, norm_cfg=None)))
    segmentor.init_weights()
    for key, value in vit_s.vit.state_dict().items():
        torch.testing.assert_close(segmentor.backbone.vit.state_dict()[key],
                                   value)


def test_bf16_features_are_float32_and_close(vit_s):
    images = torch.rand(1, 3, 28, 28)
    reference = vit_s(images)
    vit_s.feature_dtype = 'bf16'
    try:
        low = vit_s(images)
    finally:
        vit_s.feature_dtype = None
    assert low[0].dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(low[0], reference[0], 1)
    assert cosine.min() > 0.95


def test_bad_feature_dtype_is_explained():
    with pytest.raises(ValueError, match='feature_dtype'):
        DINOv2Backbone(model_name=VIT_S, feature_dtype='int8')


def test_checkpoints_leave_out_the_frozen_vit_by_default(vit_s):
    segmentor = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='DINOv2Backbone', model_name=VIT_S,
                      out_indices=1),
        decode_head=dict(type='MLPHead', in_channels=[384], channels=16,
                         num_classes=3, norm_cfg=None)))
    state = segmentor.state_dict()
    # of the backbone only the digest of the frozen weights the head was trained with
    assert [key for key in state if key.startswith('backbone.')] == [
        'backbone.frozen_vit_sha256']
    assert state['backbone.frozen_vit_sha256'].dtype == torch.uint8
    assert state['backbone.frozen_vit_sha256'].shape == (32,)
    assert any(key.startswith('decode_head.') for key in state)
    # a head-only state dict loads strictly and keeps the ViT weights
    own = segmentor.backbone.vit.blocks[0].attn.qkv.weight.clone()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the same weights: no warning
        segmentor.load_state_dict(state, strict=True)
    torch.testing.assert_close(segmentor.backbone.vit.blocks[0].attn.qkv.weight,
                               own)


def test_a_head_trained_on_other_frozen_weights_is_flagged_on_load():
    def build(seed):
        torch.manual_seed(seed)  # random ViT weights: another seed, other weights
        return DINOv2Backbone(model_name=VIT_S, out_indices=1)
    trained, other = build(0), build(1)
    state = trained.state_dict()
    assert not torch.equal(state['frozen_vit_sha256'], other.vit_digest())
    with pytest.warns(UserWarning, match='trained with other frozen ViT weights'):
        other.load_state_dict(dict(state), strict=True)
    old_checkpoint = {k: v for k, v in state.items() if k != 'frozen_vit_sha256'}
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # written before digests: nothing to compare
        other.load_state_dict(old_checkpoint, strict=True)


def test_frozen_vit_can_be_kept_in_checkpoints():
    backbone = DINOv2Backbone(model_name=VIT_S, out_indices=1,
                              save_frozen_weights=True)
    assert 'vit.cls_token' in backbone.state_dict()


def test_norm_on_an_average_pool_vit_applies_its_fc_norm_to_each_token():
    # its final LayerNorm (fc_norm) follows the pool and timm's norm=True passed the
    # tokens through unnormalised: norm=True and norm=False gave the same maps
    torch.manual_seed(0)
    name = 'vit_wee_patch16_reg1_gap_256'
    normed = DINOv2Backbone(model_name=name, out_indices=1, norm=True)
    raw = DINOv2Backbone(model_name=name, out_indices=1, norm=False)
    raw.vit.load_state_dict(normed.vit.state_dict())
    with torch.no_grad():
        normed.vit.fc_norm.weight.normal_()
        raw.vit.fc_norm.weight.copy_(normed.vit.fc_norm.weight)
    image = torch.rand(1, 3, 32, 48)
    got, plain = normed(image)[0], raw(image)[0]
    assert got.shape == plain.shape == (1, 256, 2, 3)
    expected = normed.vit.fc_norm(plain.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain)


def test_norm_on_a_vit_without_a_final_layernorm_is_said_to_change_nothing():
    backbone = DINOv2Backbone(model_name=VIT_S, out_indices=1)  # its own: altered below
    backbone.vit.norm, backbone.vit.fc_norm = torch.nn.Identity(), torch.nn.Identity()
    with pytest.warns(UserWarning, match='has no final LayerNorm, so norm=True changes '
                                         'nothing; set norm=False'):
        assert backbone._final_norm_is_fc_norm('m') is False


def test_a_plain_encoder_decoder_gets_the_backbones_checks_from_the_tools():
    # only EMATeacherUDA ran them when built: MMSeg's EncoderDecoder on the base model
    # config, with a /14 ViT behind size_divisor=16, shifted 31 % of the predictions
    import copy
    from pathlib import Path

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmseg_saot.models.backbones.dinov2 import check_segmentor_parts
    init_default_scope('mmseg')
    repo = Path(__file__).resolve().parents[3]
    base = Config.fromfile(str(repo / 'configs' / '_base_' / 'models' / 'dinov2_mlp.py')).model
    base.backbone.update(model_name=VIT_S, pretrained=False, out_indices=1)
    base.decode_head.update(in_channels=[384], in_index=[0],
                            norm_cfg=dict(type='BN', requires_grad=True))
    check_segmentor_parts(MODELS.build(copy.deepcopy(base)))  # as configured: fine
    shifted = copy.deepcopy(base)
    shifted.data_preprocessor.update(size_divisor=16, test_cfg=dict(size_divisor=16))
    with pytest.raises(ConfigError, match='^EncoderDecoder: model.data_preprocessor.'
                       'size_divisor=16, model.data_preprocessor.test_cfg.size_divisor=16 '
                       'is not a multiple of the patch size'):
        check_segmentor_parts(MODELS.build(shifted))
    wide = copy.deepcopy(base)
    wide.decode_head.update(in_channels=[768])
    with pytest.raises(ConfigError, match=r'^EncoderDecoder: the decode head takes '
                       r'in_index=\[0\] with in_channels=\[768\]'):
        check_segmentor_parts(MODELS.build(wide))
    # a swapped ViT trained on other input statistics (mean 0.5, std 0.5) read the base
    # config's ImageNet-normalised inputs without a word
    swapped = copy.deepcopy(base)
    swapped.backbone.update(model_name='vit_tiny_patch16_224')
    swapped.decode_head.update(in_channels=[192])
    swapped.data_preprocessor.update(size_divisor=16, test_cfg=dict(size_divisor=16))
    with pytest.warns(UserWarning, match=r'^EncoderDecoder: model.data_preprocessor '
                      r'normalises with mean=\[123.675, 116.28, 103.53\].* but '
                      r'vit_tiny_patch16_224 was trained with mean=\[127.5, 127.5, 127.5\]'):
        check_segmentor_parts(MODELS.build(swapped))
    dinov2 = MODELS.build(copy.deepcopy(base))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # DINOv2 with ImageNet statistics: nothing to say
        check_segmentor_parts(dinov2)
    # a segmentor-level init_cfg re-initialised the frozen ViT (MMEngine applies it to
    # every submodule): qkv weights went from std 0.02 to 0.01
    normal = copy.deepcopy(base)
    normal.init_cfg = dict(type='Normal', layer=['Conv2d', 'Linear'], std=0.01)
    with pytest.raises(ConfigError, match=r"^EncoderDecoder: model.init_cfg=\{'type': "
                       r"'Normal'.* re-initialise its loaded weights"):
        check_segmentor_parts(MODELS.build(normal))
