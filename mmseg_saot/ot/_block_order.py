"""Order points into blocks of similar features (block-sparse step 1).

See :mod:`mmseg_saot.ot.block_sparse`: ``'kmeans'`` sorts points by their nearest
centroid (fitted on a subsample), ``'tree'`` by recursive median splits along the top
principal direction. Both return ``(num_blocks, block)`` index tables, padded with ``n``.
"""
import math
from typing import List

import torch

def _order_blocks(z: torch.Tensor, block: int, ordering: str) -> torch.Tensor:
    """``(num_blocks, block)`` index blocks of the points with projections ``z``."""
    if ordering == 'kmeans':
        return _kmeans_blocks(z, block)
    # The tree is hundreds of tiny eigen-problems: built on CPU whatever the device.
    return _tree_blocks(z.cpu(), block).to(z.device)


def _kmeans_blocks(z: torch.Tensor, block: int, num_centroids: int = 64,
                   sample: int = 4096, init_sample: int = 1024,
                   iters: int = 8) -> torch.Tensor:
    """Order points by their nearest of ``num_centroids`` k-means centroids and cut them
    into ``(num_blocks, block)`` index blocks (last one padded with index ``n``).

    The centroids are fitted by Lloyd iterations on a seeded subsample of ``sample``
    points, initialised by farthest-point sampling on its first ``init_sample`` points
    (the sequential part: one pass per centroid); within a centroid, points are ordered
    along the first projection coordinate. A few matrix products in all, against
    hundreds of small eigen-problems for the PCA tree.
    """
    n = z.shape[0]
    num_blocks = max(1, math.ceil(n / block))
    k = max(1, min(num_centroids, num_blocks))
    gen = torch.Generator(device='cpu').manual_seed(0)
    pts = z[torch.randperm(n, generator=gen)[:min(n, sample)].to(z.device)]
    centres = _farthest_points(pts[:init_sample], k)
    for _ in range(iters):
        assign = _nearest(pts, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, pts)
        counts = torch.bincount(assign, minlength=k).to(pts.dtype)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    assign = torch.cat([_nearest(z[i0:i0 + 8192], centres) for i0 in range(0, n, 8192)])
    order = torch.argsort(z[:, 0])
    order = order[torch.argsort(assign[order], stable=True)]
    out = torch.full((num_blocks * block,), n, dtype=torch.long, device=z.device)
    out[:n] = order
    return out.view(num_blocks, block)


def _farthest_points(pts: torch.Tensor, k: int) -> torch.Tensor:
    """``(k, d)`` points of ``pts`` chosen greedily, each the farthest from those before
    (the first one first): spreads the initial centroids over the clusters."""
    chosen = [torch.zeros((), dtype=torch.long, device=pts.device)]
    dist = ((pts - pts[0]) ** 2).sum(1)
    for _ in range(1, min(k, pts.shape[0])):  # indices stay on the device: no syncs
        chosen.append(dist.argmax())
        dist = torch.minimum(dist, ((pts - pts[chosen[-1]]) ** 2).sum(1))
    centres = pts[torch.stack(chosen)]
    if centres.shape[0] < k:  # fewer points than centroids: repeat some
        centres = centres[torch.arange(k, device=pts.device) % centres.shape[0]]
    return centres


def _nearest(pts: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``(n,)`` index of each point's nearest centre, from one matrix product
    (``|c|^2 - 2 <p, c>``; ``|p|^2`` does not change the argmin)."""
    return torch.addmm((centres * centres).sum(1)[None, :], pts, centres.t(),
                       alpha=-2.0).argmin(1)


def _tree_blocks(z: torch.Tensor, block: int) -> torch.Tensor:
    """Order points by a PCA tree and cut them into ``(num_blocks, block)`` index blocks.

    Each split sorts a node's points along its top principal direction and gives the
    first child exactly ``block * floor(nb / 2)`` points, so that all blocks are full
    except the last one, padded with index ``n`` (a dummy point).
    """
    n = z.shape[0]
    num_blocks = max(1, math.ceil(n / block))
    leaves: List[torch.Tensor] = []
    stack = [(torch.arange(n, device=z.device), num_blocks)]
    while stack:
        idx, nb = stack.pop()
        if nb == 1:
            leaves.append(idx)
            continue
        pts = z[idx]
        centred = pts - pts.mean(0)
        cov = centred.t() @ centred
        direction = torch.linalg.eigh(cov.double())[1][:, -1].to(pts.dtype)
        order = idx[torch.argsort(centred @ direction)]
        left = (nb // 2) * block
        stack.append((order[left:], nb - nb // 2))
        stack.append((order[:left], nb // 2))
    out = torch.full((num_blocks, block), n, dtype=torch.long, device=z.device)
    for i, leaf in enumerate(leaves):
        out[i, :leaf.shape[0]] = leaf
    return out
