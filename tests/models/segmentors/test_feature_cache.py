"""FrozenFeatureCache: content-addressed, rounding-consistent, budgeted, shared on disk."""
import torch
from torch import nn

from mmseg_saot.models.segmentors.feature_cache import (FrozenFeatureCache, image_key,
                                                        module_fingerprint)


class CountingBackbone:
    """Two maps per image; counts the images it computes."""

    def __init__(self):
        self.images = 0

    def __call__(self, images):
        self.images += len(images)
        pooled = torch.nn.functional.avg_pool2d(images, 2)
        return [pooled * 1.001, pooled.mean(1, keepdim=True)]


def images(n=3, seed=0):
    return torch.randn(n, 3, 8, 10, generator=torch.Generator().manual_seed(seed))


def test_second_pass_hits_and_returns_the_same_features():
    cache, backbone = FrozenFeatureCache(max_gb=1), CountingBackbone()
    first = cache.features(images(), backbone)
    second = cache.features(images(), backbone)
    assert backbone.images == 3 and (cache.hits, cache.misses) == (3, 3)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert a.dtype == torch.float32


def test_hits_and_misses_give_identical_numbers_rounded_to_storage():
    backbone = CountingBackbone()
    warm = FrozenFeatureCache(max_gb=1)
    warm.features(images()[:2], backbone)  # two of three already cached
    mixed = warm.features(images(), backbone)
    cold = FrozenFeatureCache(max_gb=1).features(images(), backbone)
    exact = backbone(images())
    for a, b, c in zip(mixed, cold, exact):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert torch.equal(a, c.half().float())


class BatchDependentBackbone:
    """Features that change with the other images of the batch, as the last bits of CPU
    matrix products can (here far above fp16 rounding, to see it)."""

    def __call__(self, images):
        return [images + 0.1 * images.mean(0, keepdim=True)]


def test_an_image_gets_the_same_features_whichever_images_were_cached():
    # a resumed run starts with an empty cache: the uninterrupted run computed image 0
    # with image 1, the resumed one meets it next to image 2
    backbone, batch = BatchDependentBackbone(), images(3)
    warm = FrozenFeatureCache(max_gb=1, dtype='fp32')
    warm.features(batch[[0, 1]], backbone)
    uninterrupted = warm.features(batch[[0, 2]], backbone)[0]
    resumed = FrozenFeatureCache(max_gb=1, dtype='fp32').features(batch[[0, 2]], backbone)[0]
    torch.testing.assert_close(uninterrupted, resumed, rtol=0, atol=0)
    alone = torch.stack([backbone(batch[i:i + 1])[0][0] for i in (0, 2)])
    torch.testing.assert_close(resumed, alone, rtol=0, atol=0)  # each image on its own


def test_an_image_twice_in_a_batch_is_computed_once():
    backbone, batch = CountingBackbone(), images(2)
    cache = FrozenFeatureCache(max_gb=1)
    maps = cache.features(batch[[0, 1, 0]], backbone)
    assert backbone.images == 2 and len(cache) == 2
    torch.testing.assert_close(maps[0][0], maps[0][2], rtol=0, atol=0)


def test_a_changed_image_is_a_miss_never_a_stale_feature():
    cache, backbone = FrozenFeatureCache(max_gb=1), CountingBackbone()
    batch = images()
    cache.features(batch, backbone)
    batch[1, 0, 0, 0] += 1.0  # e.g. another random crop or colour change
    out = cache.features(batch, backbone)
    assert backbone.images == 4
    assert torch.equal(out[0][1], backbone(batch[1:2])[0][0].half().float())
    assert image_key(batch[0]) != image_key(batch[1])


def test_memory_budget_stops_growth_but_results_stay_right():
    backbone = CountingBackbone()
    per_image = 3 * 4 * 5 * 2 + 1 * 4 * 5 * 2  # bytes of the two fp16 maps
    cache = FrozenFeatureCache(max_gb=2.5 * per_image / (1 << 30))
    first = cache.features(images(), backbone)
    assert len(cache) == 2 and cache.num_bytes <= cache.max_bytes
    second = cache.features(images(), backbone)
    assert backbone.images == 4  # the third image is computed again
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_disk_cache_is_shared_by_a_second_cache(tmp_path):
    backbone = CountingBackbone()
    first = FrozenFeatureCache(max_gb=1, folder=str(tmp_path)).features(images(), backbone)
    other = FrozenFeatureCache(max_gb=1, folder=str(tmp_path))
    again = other.features(images(), backbone)
    assert backbone.images == 3 and other.hits == 3
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not list(tmp_path.rglob('*.tmp'))


def test_fingerprint_changes_with_weights_and_config():
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    base = module_fingerprint(layer, 'a')
    assert module_fingerprint(layer, 'a') == base
    assert module_fingerprint(layer, 'b') != base
    with torch.no_grad():
        layer.weight[0, 0] += 1e-3
    assert module_fingerprint(layer, 'a') != base


def test_bad_options_are_named():
    import pytest
    with pytest.raises(ValueError, match='dtype'):
        FrozenFeatureCache(dtype='int8')
    with pytest.raises(ValueError, match='max_gb'):
        FrozenFeatureCache(max_gb=0)


def test_mixed_batch_keeps_row_order_and_entries_own_their_memory():
    backbone, batch = CountingBackbone(), images(4)
    alone = FrozenFeatureCache(max_gb=1, dtype='fp32').features(batch, CountingBackbone())
    cache = FrozenFeatureCache(max_gb=1, dtype='fp32')  # fp32: a row would be a view
    cache.features(batch[[1, 3]], backbone)  # rows 1 and 3 cached first
    mixed = cache.features(batch, backbone)  # hits at 1 and 3, misses at 0 and 2
    assert backbone.images == 4 and (cache.hits, cache.misses) == (2, 4)
    for a, b in zip(mixed, alone):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for maps in cache._entries.values():  # a row's entry is not a view of its batch
        for m in maps:
            assert m.untyped_storage().nbytes() == m.numel() * m.element_size()


def test_a_budget_that_is_not_a_positive_number_is_named():
    import pytest

    from mmseg_saot.utils.errors import ConfigError
    for bad in ('abc', 0, -1.0):
        with pytest.raises(ConfigError, match=f'^feature_cache: max_gb must be a number > 0, '
                                              f'got {bad!r}.$'):
            FrozenFeatureCache(max_gb=bad)
