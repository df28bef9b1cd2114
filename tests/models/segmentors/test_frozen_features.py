"""FrozenFeaturesMixin: one backbone pass per input in a shared block; cache hits logged."""
import torch
from torch import nn

from mmseg_saot.models.segmentors.frozen_features import FrozenFeaturesMixin


class CountingBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, x):
        self.calls += 1
        return [x * self.scale]


class Segmentor(FrozenFeaturesMixin, nn.Module):
    def __init__(self, cache: bool, folder=None):
        super().__init__()
        self.backbone = CountingBackbone()
        self._setup_frozen_features(dict(type='CountingBackbone'), cache, 0.01, 'fp32',
                                    folder, 'Segmentor')


def test_within_a_shared_block_each_input_goes_through_the_backbone_once():
    model, image = Segmentor(cache=False), torch.rand(1, 3, 4, 4)
    with model._features_shared():
        first, second = model._backbone_feat(image), model._backbone_feat(image)
        model._backbone_feat(image[..., :2])  # another view: its own pass
    assert first is second and model.backbone.calls == 2
    model._backbone_feat(image)  # outside the block: computed again
    assert model.backbone.calls == 3


def test_cache_hits_are_the_share_of_the_steps_inputs_found_in_the_cache(tmp_path):
    model, image = Segmentor(cache=True, folder=str(tmp_path)), torch.rand(1, 3, 4, 4)

    def step():
        model._backbone_feat(image)
        model._backbone_feat(image)
        return {'loss': torch.zeros(())}

    assert float(model._with_cache_hits(step)['feature_cache_hits']) == 0.5
    assert float(model._with_cache_hits(step)['feature_cache_hits']) == 1.0
    assert model.backbone.calls == 1
    assert model.feature_cache.folder.startswith(str(tmp_path))
    assert 'feature_cache_hits' not in Segmentor(cache=False)._with_cache_hits(step)
