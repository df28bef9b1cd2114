"""Synthetic clustered patch features with labels, for tests and benchmarks.

Real ViT patch features of a semantic segmentation dataset are clustered by class,
with sub-clusters (object parts, instances), very unequal class frequencies, and a
shift between domains. :func:`clustered_features` draws unit vectors with that
structure so that solvers and label transfer can be checked and timed on data that
behaves like SAOT's, without a dataset.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

# Pixel frequencies (%) of the 19 Cityscapes train classes, road ... bicycle.
CITYSCAPES_FREQ = (32.6, 5.4, 20.2, 0.6, 0.8, 1.1, 0.2, 0.5, 14.1, 1.0, 3.6, 1.1, 0.1, 6.2,
                   0.2, 0.2, 0.2, 0.1, 0.4)


class ClusteredFeatures:
    """A fixed class geometry from which source and target point sets are drawn.

    Args:
        dim: feature dimension D.
        num_classes: number of classes (default 19, with Cityscapes frequencies).
        subclusters: sub-clusters per class.
        class_spread: distance of sub-cluster centres from their class centre (relative
            to the unit class centre).
        noise: isotropic noise norm per point (relative); 1.0 gives a within-class
            cosine around 0.5 in high dimension.
        seed: seed of the class geometry.
    """

    def __init__(self, dim: int, num_classes: int = 19, subclusters: int = 4,
                 class_spread: float = 0.6, noise: float = 1.0, seed: int = 0,
                 frequencies: Optional[Sequence[float]] = None):
        gen = torch.Generator().manual_seed(seed)
        self.dim, self.num_classes, self.noise = dim, num_classes, noise
        centres = F.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
        offsets = F.normalize(torch.randn(num_classes, subclusters, dim, generator=gen), dim=2)
        self.subcentres = F.normalize(centres[:, None] + class_spread * offsets, dim=2)
        freq = frequencies if frequencies is not None else (
            CITYSCAPES_FREQ if num_classes == 19 else [1.0] * num_classes)
        self.freq = torch.tensor(freq[:num_classes], dtype=torch.float64)
        self.freq = self.freq / self.freq.sum()
        self.shift = F.normalize(torch.randn(dim, generator=gen), dim=0)

    def sample(self, num_points: int, seed: int, domain_shift: float = 0.0,
               concentration: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(features (n, D) unit fp32, labels (n,) int64)``.

        Args:
            num_points: n.
            seed: seed of this draw.
            domain_shift: norm of a common offset added before normalisation (a domain gap).
            concentration: if set, class proportions are drawn from a Dirichlet around the
                frequencies with this concentration (an image's own class mix); otherwise
                the dataset frequencies are used.
        """
        gen = torch.Generator().manual_seed(seed)
        probs = self.freq
        if concentration is not None:
            with torch.random.fork_rng(devices=[]):  # seeded, global RNG untouched
                torch.manual_seed(seed)
                alpha = (concentration * probs).clamp_min(1e-3)
                probs = torch.distributions.Dirichlet(alpha).sample()
        labels = torch.multinomial(probs.float(), num_points, replacement=True, generator=gen)
        sub = torch.randint(0, self.subcentres.shape[1], (num_points,), generator=gen)
        noise = F.normalize(torch.randn(num_points, self.dim, generator=gen), dim=1)
        feats = self.subcentres[labels, sub] + self.noise * noise + domain_shift * self.shift
        return F.normalize(feats, dim=1), labels


def saot_working_point(dim: int = 1024, target_hw: Tuple[int, int] = (37, 74),
                       num_sources: int = 8, seed: int = 0):
    """Target and source features at SAOT's working point.

    One target image of ``target_hw`` patches against ``num_sources`` source images of
    the same size (default 37 x 74 = 2738 patches each, 21904 sources), with a domain
    shift and per-image class mixes.

    Returns:
        ``(source_feats, source_labels, target_feats, target_labels)``.
    """
    geometry = ClusteredFeatures(dim, seed=seed)
    per_image = target_hw[0] * target_hw[1]
    feats, labels = [], []
    for k in range(num_sources):
        f, l = geometry.sample(per_image, seed=1000 * seed + k + 1, concentration=20.0)
        feats.append(f)
        labels.append(l)
    tgt, tgt_labels = geometry.sample(per_image, seed=1000 * seed + 999, domain_shift=0.3,
                                      concentration=20.0)
    return torch.cat(feats), torch.cat(labels), tgt, tgt_labels
