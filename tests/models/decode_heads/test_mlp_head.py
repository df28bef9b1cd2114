import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_saot.models.decode_heads import MLPHead
from mmseg_saot.utils.errors import ConfigError


def make_head(**kwargs) -> MLPHead:
    torch.manual_seed(0)
    defaults = dict(in_channels=[8, 8], in_index=[0, 1], channels=16,
                    num_classes=3, norm_cfg=None, dropout_ratio=0.0)
    defaults.update(kwargs)
    return MLPHead(**defaults)


def make_samples(labels, weights=None):
    samples = []
    for index, label in enumerate(labels):
        sample = SegDataSample(gt_sem_seg=PixelData(data=label[None]))
        if weights is not None and weights[index] is not None:
            sample.gt_pixel_weight = PixelData(data=weights[index][None])
        samples.append(sample)
    return samples


@pytest.fixture
def inputs():
    torch.manual_seed(1)
    return (torch.randn(2, 8, 4, 6), torch.randn(2, 8, 2, 3))


def test_forward_on_the_first_maps_grid(inputs):
    logits = make_head()(inputs)
    assert logits.shape == (2, 3, 4, 6)


def test_single_int_arguments():
    head = make_head(in_channels=8, in_index=0)
    assert head((torch.randn(1, 8, 3, 3), )).shape == (1, 3, 3, 3)


def test_mismatched_in_channels_and_in_index():
    with pytest.raises(ValueError, match='same length'):
        make_head(in_channels=[8], in_index=[0, 1])


def test_num_layers_must_be_positive():
    with pytest.raises(ValueError, match='num_layers'):
        make_head(num_layers=0)


@pytest.mark.parametrize('option, value, message', [
    ('num_classes', 'abc', "num_classes must be an integer >= 1, got 'abc'"),
    ('num_classes', 0, 'num_classes must be an integer >= 1, got 0'),
    ('channels', 2.5, 'channels must be an integer >= 1, got 2.5'),
    ('in_channels', [8, True], 'in_channels must be an integer >= 1, got True'),
    ('dropout_ratio', 1.5, r'dropout_ratio must be a number >= 0 and < 1, got 1.5'),
    ('dropout_ratio', 'abc', r"dropout_ratio must be a number >= 0 and < 1, got 'abc'"),
])
def test_bad_option_is_a_config_error_naming_it(option, value, message):
    # a ConfigError is what the tools print without a traceback
    with pytest.raises(ConfigError, match=f'MLPHead: {message}'):
        make_head(**{option: value})


def _loss(head, inputs, labels, weights=None):
    return head.loss_by_feat(head(inputs),
                             make_samples(labels, weights))['loss_ce']


def test_unit_weights_equal_no_weights_and_scale_linearly(inputs):
    head = make_head()
    labels = torch.randint(0, 3, (2, 8, 12))
    plain = _loss(head, inputs, labels)
    ones = _loss(head, inputs, labels, [torch.ones(8, 12)] * 2)
    half = _loss(head, inputs, labels, [torch.full((8, 12), 0.5)] * 2)
    torch.testing.assert_close(plain, ones)
    torch.testing.assert_close(half, plain / 2)


def test_zero_weight_pixels_do_not_contribute(inputs):
    head = make_head()
    labels = torch.randint(0, 3, (2, 8, 12))
    weights = [torch.ones(8, 12), torch.ones(8, 12)]
    weights[0][:, :6] = 0
    weighted = _loss(head, inputs, labels, weights)
    # changing the labels where the weight is 0 changes nothing
    relabelled = labels.clone()
    relabelled[0, :, :6] = (relabelled[0, :, :6] + 1) % 3
    torch.testing.assert_close(
        weighted, _loss(head, inputs, relabelled, weights))
    assert not torch.isclose(_loss(head, inputs, labels),
                             _loss(head, inputs, relabelled))


def test_samples_without_weights_count_as_one(inputs):
    head = make_head()
    labels = torch.randint(0, 3, (2, 8, 12))
    mixed = _loss(head, inputs, labels, [torch.ones(8, 12), None])
    torch.testing.assert_close(mixed, _loss(head, inputs, labels))


def test_ignore_index_pixels_do_not_contribute(inputs):
    head = make_head()
    labels = torch.randint(0, 3, (2, 8, 12))
    labels[:, :4] = 255
    loss = _loss(head, inputs, labels)
    assert torch.isfinite(loss)
    changed = labels.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 3
    assert not torch.isclose(loss, _loss(head, inputs, changed))


def test_weight_shape_mismatch_is_explained(inputs):
    head = make_head()
    labels = torch.randint(0, 3, (2, 8, 12))
    with pytest.raises(ValueError, match='gt_pixel_weight'):
        _loss(head, inputs, labels, [torch.ones(16, 16)] * 2)


def test_weights_smaller_than_padded_labels_are_padded_with_zero(inputs):
    # the preprocessor pads labels bottom/right; unpadded weights get weight 0 there
    head = make_head()
    labels = torch.randint(0, 3, (2, 8, 12))
    cropped = _loss(head, inputs, labels, [torch.ones(6, 10)] * 2)
    full = torch.zeros(8, 12)
    full[:6, :10] = 1
    torch.testing.assert_close(cropped, _loss(head, inputs, labels, [full] * 2))


def test_loss_backpropagates_to_the_head_only(inputs):
    head = make_head()
    labels = torch.randint(0, 3, (2, 8, 12))
    _loss(head, inputs, labels).backward()
    assert all(p.grad is not None for p in head.parameters()
               if p.requires_grad)


def test_pixel_accuracy_matches_mmseg_accuracy():
    from mmseg.models.losses import accuracy

    from mmseg_saot.models.decode_heads.mlp_head import pixel_accuracy
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=gen)
    label = torch.randint(0, 5, (2, 6, 7), generator=gen)
    label[0, :2] = 255
    expected = accuracy(logits, label, ignore_index=255)
    torch.testing.assert_close(pixel_accuracy(logits, label, 255).reshape(expected.shape),
                               expected)
    assert pixel_accuracy(logits, torch.full_like(label, 255), 255) == 0


def test_maps_of_another_width_name_the_in_channels_to_set(inputs):
    head = make_head(in_channels=[8, 16])  # the second map has 8 channels
    with pytest.raises(ConfigError, match=r'maps in_index=\[0, 1\] have \[8, 8\] channels but '
                       r'in_channels is \[8, 16\]; set model.decode_head.in_channels=\[8, 8\]'):
        head(inputs)


def test_pixel_weights_with_a_loss_that_cannot_weigh_pixels_is_a_config_error(inputs):
    # DiceLoss failed an assertion deep in mmseg; LovaszLoss trained at full weight on
    # pixels weighted 0 (untrusted pseudo-labels), silently
    labels = torch.randint(0, 3, (2, 8, 12))
    weights = [torch.ones(8, 12), None]
    for extra in (dict(type='DiceLoss'), dict(type='LovaszLoss', reduction='none',
                                              loss_weight=1.0)):
        head = make_head(loss_decode=[dict(type='CrossEntropyLoss'), extra])
        with pytest.raises(ConfigError, match=(
                rf"MLPHead: loss_decode {extra['type']} cannot weigh pixels, and these "
                r'samples carry per-pixel weights \(gt_pixel_weight: pseudo-label '
                r'confidences\); use CrossEntropyLoss')):
            _loss(head, inputs, labels, weights)
        _loss(head, inputs, labels)  # without pixel weights it trains as in MMSeg


def test_in_index_beyond_the_backbones_maps_is_a_config_error(inputs):
    # a plain EncoderDecoder whose backbone gives fewer maps: a raw IndexError
    head = make_head(in_channels=[8, 8, 8], in_index=[0, 1, 2])
    with pytest.raises(ConfigError, match=(
            r'MLPHead: in_index=\[0, 1, 2\] reads map 2, but the backbone gives 2 maps; '
            r'set model.decode_head.in_index \(and in_channels\)')):
        head(inputs)
