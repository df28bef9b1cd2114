"""UDADataPreProcessor: each branch normalised and padded on its own; plain batches pass."""
import re

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_saot.models.data_preprocessors import UDADataPreProcessor


def batch(sizes, value):
    inputs, samples = [], []
    for size in sizes:
        inputs.append(torch.full((3, *size), value, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=size))
        sample.gt_sem_seg = PixelData(data=torch.zeros(1, *size, dtype=torch.long))
        samples.append(sample)
    return inputs, samples


def test_branches_are_stacked_separately():
    pre = UDADataPreProcessor(mean=[100, 100, 100], std=[2, 2, 2], size_divisor=14,
                              seg_pad_val=255)
    (src, src_s), (tgt, tgt_s) = batch([(28, 28), (20, 28)], 104), batch([(14, 42)] * 2, 98)
    out = pre(dict(inputs=dict(source=src, target=tgt),
                   data_samples=dict(source=src_s, target=tgt_s)), training=True)
    assert out['inputs']['source'].shape == (2, 3, 28, 28)
    assert out['inputs']['target'].shape == (2, 3, 14, 42)
    assert torch.all(out['inputs']['target'] == -1.0)  # (98 - 100) / 2
    assert out['inputs']['source'][1, 0, 0, 0] == 2.0
    assert out['inputs']['source'][1, 0, 27, 0] == 0.0  # padding
    assert out['data_samples']['source'][1].gt_sem_seg.data[0, 27, 0] == 255


def test_a_plain_batch_is_preprocessed_as_by_the_parent():
    pre = UDADataPreProcessor(mean=[100, 100, 100], std=[2, 2, 2], size_divisor=14)
    inputs, samples = batch([(14, 14)] * 2, 102)
    out = pre(dict(inputs=inputs, data_samples=samples), training=False)
    assert out['inputs'].shape == (2, 3, 14, 14) and torch.all(out['inputs'] == 1.0)


def test_padding_options_are_checked_when_built():
    import pytest

    from mmseg_saot.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="^UDADataPreProcessor: size_divisor must be an "
                                          "integer >= 1, got 'abc'.$"):
        UDADataPreProcessor(size_divisor='abc')
    with pytest.raises(ConfigError, match=r'^UDADataPreProcessor: size must be None or '
                                          r'\(height, width\)'):
        UDADataPreProcessor(size=(0, 14))
    # mmseg pads a training batch by exactly one of them: its bare AssertionError came in
    # the first batch, after the target set was pseudo-labelled
    for size, size_divisor in ((None, None), ([28, 42], 14)):
        with pytest.raises(ConfigError, match=r'^UDADataPreProcessor: give exactly one of '
                           r'size and size_divisor .* got ' +
                           re.escape(f'size={size!r}, size_divisor={size_divisor!r}; ') +
                           r'e\.g\. size_divisor=14'):
            UDADataPreProcessor(size=size, size_divisor=size_divisor)
    built = UDADataPreProcessor(size=[28, 42], pad_val=1, seg_pad_val=7)
    assert (built.size, built.size_divisor, built.pad_val, built.seg_pad_val) == \
        ([28, 42], None, 1, 7)
