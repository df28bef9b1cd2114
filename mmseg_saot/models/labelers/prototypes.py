"""Class prototypes of source features (spherical k-means per class) and the prior cost."""
import torch
import torch.nn.functional as F
from torch import nn


def spherical_kmeans(feats: torch.Tensor, k: int, *, num_iters: int = 20,
                     seed: int = 0) -> torch.Tensor:
    """Cluster unit vectors by cosine similarity; deterministic for a seed.

    Args:
        feats: ``(N, D)`` features (normalised inside), N >= 1.
        k: clusters; clipped to N.
        num_iters: Lloyd iterations.
        seed: seed of the farthest-point initialisation's first centre.

    Returns:
        ``(min(k, N), D)`` unit centres.
    """
    x = F.normalize(feats.float(), dim=1)
    k = min(int(k), x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    centres = [x[int(torch.randint(x.shape[0], (1,), generator=gen))]]
    for _ in range(1, k):  # farthest point: spreads the centres over the class's modes
        sim = torch.stack(centres) @ x.t()
        centres.append(x[int(sim.max(0).values.argmin())])
    centres = torch.stack(centres)
    for _ in range(num_iters):
        assign = (x @ centres.t()).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        empty = sums.norm(dim=1) == 0
        centres = torch.where(empty[:, None], centres, F.normalize(sums, dim=1))
    return centres


class ClassPrototypes(nn.Module):
    """Up to ``num_per_class`` unit prototypes per class, and the semantic prior cost.

    The prior cost of a class c for a target feature t is
    :math:`Q_{c}(t) = 1 - \\max_k \\cos(t, p_{c,k})` in [0, 2]; classes without
    source features get the maximum cost 2. A source patch i of class
    :math:`y_i` is charged :math:`C^{prior}_{ij} = Q_{y_i}(t_j)`: moving a label to a
    target that looks nothing like any mode of that class is expensive even if the
    two patches happen to look alike.

    Args:
        num_classes: number of classes C.
        dim: feature dimension D.
        num_per_class: prototypes per class K (k-means clusters).
        num_iters: k-means iterations.
        seed: k-means seed.

    Buffers (saved in ``state_dict``):
        prototypes: ``(C, K, D)`` unit prototypes (zero rows where unused).
        valid: ``(C, K)`` bool, which prototypes exist.
    """

    def __init__(self, num_classes: int = 19, dim: int = 384, num_per_class: int = 4,
                 num_iters: int = 20, seed: int = 0) -> None:
        super().__init__()
        self.num_classes, self.num_per_class = num_classes, num_per_class
        self.num_iters, self.seed = num_iters, seed
        self.register_buffer('prototypes', torch.zeros(num_classes, num_per_class, dim))
        self.register_buffer('valid', torch.zeros(num_classes, num_per_class, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, feats: torch.Tensor, labels: torch.Tensor,
            ignore_index: int = 255) -> 'ClassPrototypes':
        """Cluster the features of each class.

        Args:
            feats: ``(N, D)`` source features (already mapped by the metric).
            labels: ``(N,)`` labels, ``ignore_index`` skipped.
        """
        self.prototypes.zero_()
        self.valid.zero_()
        for c in range(self.num_classes):
            members = feats[labels == c]
            if members.shape[0] == 0:
                continue
            centres = spherical_kmeans(members, self.num_per_class, num_iters=self.num_iters,
                                       seed=self.seed + c)
            self.prototypes[c, :centres.shape[0]] = centres.to(self.prototypes.dtype)
            self.valid[c, :centres.shape[0]] = True
        return self

    def class_cost(self, target: torch.Tensor) -> torch.Tensor:
        """``(C, M)`` prior cost :math:`Q_c(t_j)` of each class for ``(M, D)`` targets."""
        t = F.normalize(target.float(), dim=1)
        sim = torch.einsum('ckd,md->ckm', self.prototypes.float(), t)
        sim = sim.masked_fill(~self.valid[:, :, None], -1.0)
        return 1.0 - sim.max(1).values

    def classify(self, target: torch.Tensor) -> torch.Tensor:
        """``(M,)`` nearest-prototype class of each target (a prototype baseline)."""
        return self.class_cost(target).argmin(0)
