"""The procedural two-domain street scenes of the demo data."""
import dataclasses

import cv2
import numpy as np
import pytest

from mmseg_saot.datasets import synthetic_streets as ss
from mmseg_saot.datasets.cityscapes_labels import (CLASSES,
                                                   TRAIN_ID_TO_LABEL_ID,
                                                   label_ids_to_train_ids)

NUM_PER_DOMAIN = 6


@pytest.fixture(scope='module')
def samples():
    """{domain: (images (N, H, W, 3), train ids (N, H, W), label ids)}."""
    out = {}
    for domain, style in ss.STYLES.items():
        pairs = [ss.render_scene([0, index], style)
                 for index in range(NUM_PER_DOMAIN)]
        label_ids = np.stack([p[1] for p in pairs])
        out[domain] = (np.stack([p[0] for p in pairs]),
                       label_ids_to_train_ids(label_ids), label_ids)
    return out


def test_shapes_and_types(samples):
    images, train_ids, label_ids = samples['source']
    assert images.shape == (NUM_PER_DOMAIN, ss.HEIGHT, ss.WIDTH, 3)
    assert images.dtype == train_ids.dtype == label_ids.dtype == np.uint8
    assert (ss.WIDTH, ss.HEIGHT) == (448, 224)  # 32 x 16 patches of 14


def test_same_seed_same_scene_other_seed_other_scene():
    image, labels = ss.render_scene(7, ss.TARGET_STYLE)
    again = ss.render_scene(7, ss.TARGET_STYLE)
    assert (image == again[0]).all() and (labels == again[1]).all()
    other = ss.render_scene(8, ss.TARGET_STYLE)
    assert (labels != other[1]).mean() > 0.05
    assert np.abs(image.astype(int) - other[0]).mean() > 5


def test_labels_are_cityscapes_label_ids(samples):
    valid = set(TRAIN_ID_TO_LABEL_ID.values()) | {1}   # 1: ego vehicle
    for _, _, label_ids in samples.values():
        assert set(np.unique(label_ids).tolist()) <= valid


def test_many_classes_in_each_domain(samples):
    core = {'road', 'sidewalk', 'building', 'vegetation', 'sky', 'car',
            'person', 'pole', 'traffic sign'}
    for domain, (_, train_ids, _) in samples.items():
        present = {CLASSES[c] for c in np.unique(train_ids) if c < 19}
        assert len(present) >= 10, (domain, present)
        assert core <= present, (domain, core - present)


def test_only_the_target_has_the_ignored_ego_hood(samples):
    assert not (samples['source'][2] == 1).any()
    hood = samples['target'][2] == 1
    assert hood.any()
    # the hood sits at the bottom of the picture
    rows = np.nonzero(hood.any(axis=(0, 2)))[0]
    assert rows.min() > 0.8 * ss.HEIGHT


def _class_colour(images, train_ids, class_name):
    mask = train_ids == CLASSES.index(class_name)
    assert mask.sum() > 500, class_name
    return images[mask].astype(np.float64)


@pytest.mark.parametrize('class_name',
                         ['road', 'sidewalk', 'building', 'vegetation', 'sky',
                          'car'])
def test_same_class_looks_different_across_domains(samples, class_name):
    """The shift is in hue and saturation, not only in brightness."""
    source = _class_colour(*samples['source'][:2], class_name)
    target = _class_colour(*samples['target'][:2], class_name)
    chroma_s = source.mean(0) / source.mean(0).sum()
    chroma_t = target.mean(0) / target.mean(0).sum()
    assert np.abs(chroma_s - chroma_t).sum() > 0.04

    def saturation(pixels):
        return ((pixels.max(1) - pixels.min(1)) / (pixels.max(1) + 1)).mean()
    assert saturation(source) > saturation(target) + 0.1


def test_target_has_sensor_noise(samples):
    """Inside flat regions (sky, eroded) the target varies from pixel to
    pixel, the rendered source does not."""
    def residual(images, train_ids):
        values = []
        for image, labels in zip(images, train_ids):
            inner = cv2.erode((labels == CLASSES.index('sky')).astype(
                np.uint8), np.ones((7, 7), np.uint8)) > 0
            image = image.astype(np.float32)
            detail = image - cv2.GaussianBlur(image, (0, 0), 2)
            values.append(np.abs(detail[inner]))
        return np.concatenate(values).mean()
    assert residual(*samples['target'][:2]) > 2 * residual(
        *samples['source'][:2])


def test_class_proportions_differ(samples):
    def share(domain, names):
        train_ids = samples[domain][1]
        return np.isin(train_ids, [CLASSES.index(n) for n in names]).mean()
    assert share('source', ['vegetation', 'terrain']) > 1.5 * share(
        'target', ['vegetation', 'terrain'])
    assert share('target', ['person', 'rider']) > share(
        'source', ['person', 'rider'])


def test_blend_styles_interpolates():
    a, b = ss.SOURCE_STYLE, ss.TARGET_STYLE
    assert ss.blend_styles(a, b, 0.0) == a
    assert ss.blend_styles(a, b, 1.0) == b
    half = ss.blend_styles(a, b, 0.5)
    assert half.saturation == pytest.approx((a.saturation + b.saturation) / 2)
    assert half.tint == pytest.approx(tuple(
        (x + y) / 2 for x, y in zip(a.tint, b.tint)))
    assert half.colors['sky_top'][0] == tuple(
        round((x + y) / 2) for x, y in zip(a.colors['sky_top'][0],
                                           b.colors['sky_top'][0]))
    for field in dataclasses.fields(ss.DomainStyle):
        assert field.name in ('name', 'colors') or isinstance(
            getattr(a, field.name), (int, float, tuple))
    image, labels = ss.render_scene(3, half, width=224, height=112)
    assert image.shape == (112, 224, 3) and labels.shape == (112, 224)
