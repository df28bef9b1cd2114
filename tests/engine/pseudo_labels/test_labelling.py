"""label_image: one target image's pseudo-labels at its file's size."""
import numpy as np
import torch
import torch.nn.functional as F

from mmseg_saot.engine.pseudo_labels.features import ImageFeatures
from mmseg_saot.engine.pseudo_labels.labelling import label_image
from mmseg_saot.models.labelers import SAOTLabeler

C, D, PATCH = 3, 8, 14


def _labeler() -> SAOTLabeler:
    gen = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(C, D, generator=gen), dim=1)
    labels = torch.randint(C, (3, 4, 8), generator=gen)
    feats = centres[labels] + 0.3 * torch.randn(3, 4, 8, D, generator=gen)
    labeler = SAOTLabeler(method='saot', num_classes=C, feat_dim=D, metric_steps=3,
                          metric_patches=16, metric_rank=2, num_prototypes=2,
                          num_neighbors=2, center_features=False, confidence_quantile=0.5)
    return labeler.fit(feats.permute(0, 3, 1, 2), labels)


def test_the_confidence_filter_sees_the_resized_image_not_its_padding():
    # a 50 x 100 resized image pads to a 4 x 8 grid of 14 px patches (56 x 112): with
    # half of each class dropped, half of each class's image pixels stay (up to ties); when
    # the padding pixels, which share the confidences of the last row and column of
    # patches, were ranked too, 40 % of a class stayed here
    gen = torch.Generator().manual_seed(1)
    record = ImageFeatures(index=0, img_path='a.png', feats=torch.randn(D, 4, 8, generator=gen),
                           img_shape=(50, 100), ori_shape=(50, 100))
    out = label_image(_labeler(), record, PATCH)
    assert out.labels.shape == out.raw_labels.shape == (50, 100)
    for cls in np.unique(out.raw_labels):
        raw = out.raw_labels == cls
        kept = (out.labels[raw] == cls).mean()
        assert abs(kept - 0.5) <= 0.01, (cls, kept)


def test_labels_go_back_to_the_file_with_pixel_centres_aligned():
    # 'nearest' read source pixel floor(i * in / out): at 3 -> 4 columns it gave 0 0 1 2,
    # label edges half a file pixel right of the image content; centre-aligned: 0 1 1 2
    from mmseg_saot.engine.pseudo_labels.labelling import to_file_size
    maps = torch.arange(3.0).repeat(2, 1)[None]  # (1, 2, 3): columns 0, 1, 2
    record = ImageFeatures(index=0, img_path='a.png', feats=torch.zeros(D, 1, 1),
                           img_shape=(2, 3), ori_shape=(2, 4))
    assert to_file_size(maps, record)[0, 0].tolist() == [0.0, 1.0, 1.0, 2.0]
