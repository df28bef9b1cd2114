"""A learnable appearance metric over frozen features: a residual low-rank projection."""
import torch
from torch import nn

from mmseg_saot.ot import cosine_cost
from mmseg_saot.utils.errors import ConfigError


class LowRankMetric(nn.Module):
    """Residual low-rank linear map :math:`\\phi(x) = x + (x U) V^\\top`, identity at init.

    The appearance cost is the cosine cost of the mapped features,
    :math:`C^{app}_{ij} = 1 - \\cos(\\phi(x_i), \\phi(y_j))`, i.e. a Mahalanobis-like
    metric :math:`W = I + U V^\\top` on the unit sphere.

    Why this form: the frozen DINOv2 cosine is already a strong matching cost, so the
    metric starts exactly there (``V = 0``) and training can only move away from it
    where source labels say so; the rank ``r`` bounds the correction to ``2 D r``
    parameters (24k for ViT-S at r = 32), which a few hundred OT steps on source
    pairs can fit without memorising source appearance, and a linear map can be
    handed to :func:`mmseg_saot.ot.block_sparse_sinkhorn` as ``projection=``. A
    small MLP would be more expressive but leaves the identity and overfits the
    (few, synthetic) source images faster.

    Args:
        dim: feature dimension D.
        rank: rank r of the correction (0 = fixed identity metric).
        init_std: std of the random ``U`` (``V`` starts at zero, so the map is the
            identity whatever ``U`` is, and ``V`` receives a non-zero gradient).
        seed: seed of ``U``'s initialisation (deterministic, global RNG untouched).

    Shapes:
        input: ``(..., D)``; output: ``(..., D)``.
    """

    def __init__(self, dim: int = 384, rank: int = 32, init_std: float = 0.02,
                 seed: int = 0) -> None:
        super().__init__()
        if dim < 1 or rank < 0:
            raise ConfigError(f'LowRankMetric: need dim >= 1 and rank >= 0, got dim={dim}, '
                              f'rank={rank}.')
        self.dim, self.rank, self.init_std = dim, rank, init_std
        self.down = nn.Parameter(torch.empty(dim, rank))  # U
        self.up = nn.Parameter(torch.empty(dim, rank))  # V
        self.reset(seed)

    @torch.no_grad()
    def reset(self, seed: int) -> None:
        """The initial metric of ``seed``: random ``U``, zero ``V`` (the identity map)."""
        gen = torch.Generator().manual_seed(seed)
        self.down.copy_(torch.randn(self.dim, self.rank, generator=gen) * self.init_std)
        self.up.zero_()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Map ``(..., D)`` features to ``(..., D)``."""
        if feats.shape[-1] != self.dim:
            raise ValueError(f'LowRankMetric: expected features with D = {self.dim}, got '
                             f'shape {tuple(feats.shape)}.')
        if self.rank == 0:
            return feats
        return feats + (feats @ self.down.to(feats.dtype)) @ self.up.to(feats.dtype).t()

    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N, M)`` appearance cost ``1 - cos(phi(x_i), phi(y_j))`` in [0, 2]."""
        return cosine_cost(self(x), self(y))
