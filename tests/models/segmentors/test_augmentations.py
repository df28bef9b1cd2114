"""Stateless self-training augmentations: reproducible, bounded, label-consistent."""
import torch

from mmseg_saot.models.segmentors import class_mix_masks, color_jitter, gaussian_blur, mix

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def normalised(batch=3, size=(16, 20), seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, 3, *size, generator=gen) * 255
    return (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_color_jitter_is_reproducible_and_stays_in_pixel_range():
    images = normalised()
    a = color_jitter(images, MEAN, STD, generator=gen(1), probability=1.0)
    b = color_jitter(images, MEAN, STD, generator=gen(1), probability=1.0)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, images)
    pixels = a * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3


def test_color_jitter_with_probability_zero_is_identity():
    images = normalised()
    torch.testing.assert_close(color_jitter(images, MEAN, STD, generator=gen(), probability=0.0),
                               images, atol=1e-5, rtol=0)


def test_blur_preserves_constant_images_and_smooths_noise():
    constant = torch.full((2, 3, 12, 12), 0.7)
    torch.testing.assert_close(gaussian_blur(constant, generator=gen(), probability=1.0), constant)
    noise = normalised(2, (32, 32))
    blurred = gaussian_blur(noise, generator=gen(), probability=1.0, sigma_range=(1.0, 1.0))
    assert blurred.std() < 0.8 * noise.std()
    assert blurred.shape == noise.shape


def test_class_mix_takes_whole_classes_about_half_of_them():
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, 255]]])
    mask = class_mix_masks(labels, generator=gen(3))
    chosen = set(labels[mask.bool()].tolist())
    assert 255 not in chosen and len(chosen) == 2
    for cls in range(4):  # a class is either fully in or fully out
        assert len(set(mask[labels == cls].tolist())) == 1
    assert mask[labels == 255].sum() == 0


def test_mix_pastes_images_labels_and_weights_with_one_mask():
    mask = torch.tensor([[[1.0, 0.0]]])
    a_img, b_img = torch.ones(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    assert mix(mask, a_img, b_img)[0, :, 0].tolist() == [[1.0, 0.0]] * 3
    a_lab, b_lab = torch.tensor([[[5, 5]]]), torch.tensor([[[7, 7]]])
    out = mix(mask, a_lab, b_lab)
    assert out.dtype == torch.int64 and out.tolist() == [[[5, 7]]]


def padded_pair(pad_values=(0.0, 5.0)):
    """The same 2 images with their bottom 4 rows and right 6 columns padded by each of
    ``pad_values``, and the (B, H, W) mask of their image pixels."""
    images = normalised(batch=2, size=(16, 20))
    valid = torch.zeros(2, 16, 20, dtype=torch.bool)
    valid[:, :12, :14] = True
    return [torch.where(valid[:, None], images, torch.full_like(images, value))
            for value in pad_values], valid


def test_padding_does_not_bleed_into_the_image_through_jitter_or_blur():
    # blur reached the padding's grey across the image's last rows (33/255 at sigma 1.15),
    # and the contrast mean counted padded pixels
    (a, b), valid = padded_pair()
    for augment in (
            lambda x, m: color_jitter(x, MEAN, STD, generator=gen(3), probability=1.0,
                                      valid=m),
            lambda x, m: gaussian_blur(x, generator=gen(3), probability=1.0,
                                       sigma_range=(1.15, 1.15), valid=m)):
        out_a, out_b = augment(a, valid), augment(b, valid)
        inside = valid[:, None].expand_as(out_a)
        torch.testing.assert_close(out_a[inside], out_b[inside])  # the pad value is unseen
        assert torch.equal(out_b[~inside], b[~inside])  # and the padding keeps it
        assert not torch.allclose(out_a[inside], a[inside])  # the image did change
        # without the mask the two differ: the padding leaks in
        unmasked_a, unmasked_b = augment(a, None), augment(b, None)
        assert not torch.allclose(unmasked_a[inside], unmasked_b[inside])


def test_a_mask_of_all_image_pixels_changes_nothing():
    images = normalised()
    everything = torch.ones(3, 16, 20, dtype=torch.bool)
    assert torch.equal(color_jitter(images, MEAN, STD, generator=gen(4), probability=1.0),
                       color_jitter(images, MEAN, STD, generator=gen(4), probability=1.0,
                                    valid=everything))
    assert torch.equal(gaussian_blur(images, generator=gen(4), probability=1.0),
                       gaussian_blur(images, generator=gen(4), probability=1.0,
                                     valid=everything))
