"""Teacher labels and strong views: thresholds, padding, ClassMix label consistency."""
import torch
from mmseg.structures import SegDataSample

from mmseg_saot.models.segmentors.self_training import (pad_to, strong_view, teacher_labels,
                                                        valid_pixels)

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def test_teacher_labels_threshold_and_padding():
    logits = torch.zeros(1, 3, 2, 3)
    logits[0, 1, 0, 0] = 10.0  # confident class 1
    logits[0, 2, 1, 1] = 0.1  # barely class 2
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    valid[0, :, 2] = False  # padding column
    labels, weights = teacher_labels(logits, valid, threshold=0.5)
    assert labels[0, 0, 0] == 1 and weights[0, 0, 0] > 0.99
    assert labels[0, 1, 1] == 2 and weights[0, 1, 1] == 0  # below the threshold
    assert torch.all(labels[0, :, 2] == 255) and torch.all(weights[0, :, 2] == 0)


def test_valid_pixels_follow_img_shape():
    samples = [SegDataSample(metainfo=dict(img_shape=(2, 3))),
               SegDataSample(metainfo=dict(img_shape=(4, 5)))]
    mask = valid_pixels(samples, (4, 5), torch.device('cpu'))
    assert mask[0].sum() == 6 and mask[1].all()


def test_pad_to_pads_bottom_right():
    out = pad_to(torch.ones(1, 2, 3), (4, 5), value=7)
    assert out.shape == (1, 4, 5) and out[0, 3, 4] == 7 and out[0, 1, 2] == 1


def views(class_mix, seed=0):
    gen = torch.Generator().manual_seed(seed)
    source = torch.randn(2, 3, 8, 10, generator=gen)
    target = torch.randn(2, 3, 8, 10, generator=gen)
    source_labels = torch.randint(0, 4, (2, 8, 10), generator=gen)
    target_labels = torch.randint(0, 4, (2, 8, 10), generator=gen) + 10
    target_weights = torch.rand(2, 8, 10, generator=gen) * 0.5
    out = strong_view(source, source_labels, target, target_labels, target_weights,
                      mean=MEAN, std=STD, generator=torch.Generator().manual_seed(seed),
                      class_mix=class_mix)
    return (source, source_labels, target, target_labels, target_weights), out


def test_class_mix_pastes_source_pixels_with_their_labels_at_weight_one():
    (_, source_labels, _, target_labels, target_weights), (images, labels, weights) = \
        views(class_mix=True)
    pasted = labels < 10
    assert pasted.any() and (~pasted).any()
    assert torch.equal(labels[pasted], source_labels[pasted])
    assert torch.all(weights[pasted] == 1)
    assert torch.equal(labels[~pasted], target_labels[~pasted])
    assert torch.equal(weights[~pasted], target_weights[~pasted])
    # each image pastes whole classes: a class is pasted everywhere or nowhere
    for i in range(2):
        for cls in source_labels[i].unique():
            chosen = pasted[i][source_labels[i] == cls]
            assert chosen.all() or not chosen.any()


def test_without_class_mix_only_appearance_changes_and_views_are_seeded():
    (_, _, target, target_labels, target_weights), (images, labels, weights) = \
        views(class_mix=False)
    assert torch.equal(labels, target_labels) and torch.equal(weights, target_weights)
    assert images.shape == target.shape and not torch.allclose(images, target)
    again = views(class_mix=False)[1][0]
    torch.testing.assert_close(images, again, rtol=0, atol=0)
    assert not torch.allclose(images, views(class_mix=False, seed=1)[1][0])
