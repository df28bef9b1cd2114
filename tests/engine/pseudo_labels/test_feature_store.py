"""The disk feature store: a hit gives the features a miss computes; keys see every change."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS
from PIL import Image
from tiny_uda import tiny_uda_config, write_tiny_uda_data

from mmseg_saot.engine.pseudo_labels.feature_store import FeatureStore
from mmseg_saot.engine.pseudo_labels.features import FeatureMemo, iter_features


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    data = write_tiny_uda_data(tmp_path_factory.mktemp('data'), num_source=3, num_target=2)
    config = tmp_path_factory.mktemp('cfg') / 'tiny.py'
    config.write_text(tiny_uda_config(data))
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    return data, model, cfg.custom_hooks[0]['source']


def source_features(model, source_cfg, memo=None, **kwargs):
    dataset = DATASETS.build(source_cfg)
    return list(iter_features(model, dataset, range(len(dataset)), batch_size=2,
                              with_labels=True, memo=memo, **kwargs))


def test_a_second_run_reads_every_image_from_disk_with_the_same_numbers(setup, tmp_path):
    _, model, source_cfg = setup
    reference = source_features(model, source_cfg)
    first = FeatureStore(str(tmp_path), model)
    source_features(model, source_cfg, memo=FeatureMemo(store=first))
    assert (first.hits, first.misses) == (0, 3)
    entry_bytes = reference[0].feats.numel() * 4 + reference[0].labels.numel() * 8
    sizes = [path.stat().st_size for path in Path(first.folder).rglob('*.pt')]
    assert len(sizes) == 3 and max(sizes) < entry_bytes + 4096  # its own image, not the batch
    images_through_backbone = []
    handle = model.backbone.register_forward_hook(
        lambda module, args, output: images_through_backbone.append(args[0].shape[0]))
    try:
        second = FeatureStore(str(tmp_path), model)  # a new run: an empty memory memo
        stored = source_features(model, source_cfg, memo=FeatureMemo(store=second))
    finally:
        handle.remove()
    assert (second.hits, second.misses, sum(images_through_backbone)) == (3, 0, 0)
    for ref, got in zip(reference, stored):
        assert got.index == ref.index and got.img_path == ref.img_path
        assert got.img_shape == ref.img_shape and got.ori_shape == ref.ori_shape
        assert torch.equal(got.feats, ref.feats) and torch.equal(got.labels, ref.labels)


def test_other_weights_blocks_or_normalisation_use_another_folder(setup, tmp_path):
    _, model, _ = setup
    folder = FeatureStore(str(tmp_path), model).folder
    assert FeatureStore(str(tmp_path), model).folder == folder
    block = next(model.backbone.parameters())
    with torch.no_grad():
        block.add_(1e-3)
        try:
            assert FeatureStore(str(tmp_path), model).folder != folder
        finally:
            block.sub_(1e-3)
    out_indices = model.backbone.out_indices
    model.backbone.out_indices = [0]  # the same weights, another block's features
    try:
        assert FeatureStore(str(tmp_path), model).folder != folder
    finally:
        model.backbone.out_indices = out_indices
    mean = model.data_preprocessor.mean.clone()
    model.data_preprocessor.mean.add_(1.0)
    try:
        assert FeatureStore(str(tmp_path), model).folder != folder
    finally:
        model.data_preprocessor.mean.copy_(mean)


def test_a_new_feature_version_of_the_backbone_code_uses_another_folder(
        setup, tmp_path, monkeypatch):
    # features of the code before a change to what the backbone computes (norm=True on
    # an average-pool ViT once returned un-normalised tokens) were read back after it
    _, model, _ = setup
    folder = FeatureStore(str(tmp_path), model).folder
    monkeypatch.setattr(type(model.backbone), 'feature_version',
                        type(model.backbone).feature_version + 1)
    assert FeatureStore(str(tmp_path), model).folder != folder


def test_key_changes_with_pixels_labels_output_index_and_label_settings(setup):
    _, _, source_cfg = setup
    item = DATASETS.build(source_cfg)[0]
    settings = (19, 255, 14)
    key = FeatureStore.key(item, feature_index=-1, label_settings=settings)
    assert FeatureStore.key(item, feature_index=-1, label_settings=settings) == key
    assert FeatureStore.key(item, feature_index=-2, label_settings=settings) != key
    assert FeatureStore.key(item, feature_index=-1, label_settings=(19, 0, 14)) != key
    assert FeatureStore.key(item, feature_index=-1, label_settings=None) != key
    item['data_samples'].gt_sem_seg.data[0, 0, 0] += 1
    assert FeatureStore.key(item, feature_index=-1, label_settings=settings) != key
    image_only = FeatureStore.key(item, feature_index=-1)
    item['inputs'][0, 0, 0] += 1
    assert FeatureStore.key(item, feature_index=-1) != image_only


def test_an_edited_image_file_is_computed_again(setup, tmp_path):
    data, model, source_cfg = setup
    store = FeatureStore(str(tmp_path), model)
    source_features(model, source_cfg, memo=FeatureMemo(store=store))
    image = sorted(Path(data, 'gta5', 'images').glob('*.png'))[0]
    original = image.read_bytes()
    try:
        pixels = np.asarray(Image.open(image)).copy()
        pixels[:8] = 255 - pixels[:8]
        Image.fromarray(pixels).save(image)
        again = FeatureStore(str(tmp_path), model)
        source_features(model, source_cfg, memo=FeatureMemo(store=again))
        assert (again.hits, again.misses) == (2, 1)
    finally:
        image.write_bytes(original)


def test_a_truncated_entry_is_a_miss_and_is_rewritten(setup, tmp_path):
    _, model, source_cfg = setup
    store = FeatureStore(str(tmp_path), model)
    source_features(model, source_cfg, memo=FeatureMemo(store=store))
    entry = sorted(Path(store.folder).rglob('*.pt'))[0]
    entry.write_bytes(entry.read_bytes()[:100])
    again = FeatureStore(str(tmp_path), model)
    source_features(model, source_cfg, memo=FeatureMemo(store=again))
    assert (again.hits, again.misses) == (2, 1)
    assert torch.load(entry, weights_only=True)['feats'].dim() == 3
    assert not list(Path(store.folder).rglob('*.tmp'))


def test_a_store_folder_that_cannot_be_made_is_named(tmp_path):
    from mmseg_saot.utils.errors import UserInputError
    afile = tmp_path / 'afile'
    afile.write_text('')
    with pytest.raises(UserInputError, match=r'^feature store \(SAOTPseudoLabelHook '
                       r'feature_store_dir or --feature-cache\): '):
        FeatureStore(str(afile), torch.nn.Linear(1, 1))


def test_one_frame_at_two_resolutions_keeps_each_file_size(setup, tmp_path):
    # a target Resize makes the same frame at 56x84 and 112x168 one pipeline output: the
    # second file's hit took the first file's size, and its pseudo-label was written so
    _, model, _ = setup
    small = np.random.default_rng(0).integers(0, 256, (56, 84, 3), dtype=np.uint8)
    (tmp_path / 'img').mkdir()
    Image.fromarray(small).save(tmp_path / 'img' / 'a.png')
    Image.fromarray(small.repeat(2, 0).repeat(2, 1)).save(tmp_path / 'img' / 'b.png')
    target = dict(type='BaseSegDataset', data_root=str(tmp_path),
                  data_prefix=dict(img_path='img'), img_suffix='.png',
                  pipeline=[dict(type='LoadImageFromFile'),
                            dict(type='Resize', scale=(84, 56), keep_ratio=False),
                            dict(type='PackSegInputs')])
    store = FeatureStore(str(tmp_path / 'store'), model)
    dataset = DATASETS.build(target)
    records = list(iter_features(model, dataset, range(2), batch_size=1,
                                 memo=FeatureMemo(store=store)))
    assert (store.hits, store.misses) == (1, 1)  # the second file is the first's entry
    assert [r.ori_shape for r in records] == [(56, 84), (112, 168)]
    assert [r.img_shape for r in records] == [(56, 84), (56, 84)]


def test_a_colour_label_map_is_named_on_a_store_hit_too(setup, tmp_path):
    # the check ran on computed features only: an entry stored before it (every patch
    # ignore) was read back without a word
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmseg_saot.engine.pseudo_labels import PseudoLabelInputError
    from mmseg_saot.engine.pseudo_labels.features import _read_store
    _, model, _ = setup
    store = FeatureStore(str(tmp_path), model)
    sample = SegDataSample(metainfo=dict(img_path='/d/a.png', seg_map_path='/d/a_rgb.png',
                                         img_shape=(28, 28), ori_shape=(28, 28)))
    sample.gt_sem_seg = PixelData(data=torch.zeros(28, 28, 3, dtype=torch.long))
    item = dict(inputs=torch.zeros(3, 28, 28, dtype=torch.uint8), data_samples=sample)
    settings = (19, 255, 14)
    store.save(store.key(item, feature_index=-1, label_settings=settings),
               feats=torch.zeros(4, 2, 2), labels=torch.full((2, 2), 255), img_shape=(28, 28),
               ori_shape=(28, 28))
    with pytest.raises(PseudoLabelInputError, match='/d/a_rgb.png: the label map loads as '
                       r'\(28, 28, 3\)'):
        _read_store(store, [0], [item], -1, settings, 'cpu')
