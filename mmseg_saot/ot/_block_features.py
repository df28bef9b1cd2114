"""Block-sparse solver: features for one metric (projection, block means, support costs)."""
from typing import Optional

import torch
import torch.nn.functional as F

from ._block_select import _block_weights
from ._matvec import matmul_fp32
from .costs import sqeuclidean_cost

_PAD_COST = 1e4  # cost of padding slots: exp(-1e4 / eps) == 0, never a row maximum


class _Features:
    """Features for one metric: projection, block means, support costs.

    No prepared copy of the sources is kept: for the cosine cost the inverse norms are
    stored and applied to each product (:math:`1 - \\langle x_i, y_j\\rangle / |x_i||y_j|`),
    and the rows of a target block's support are gathered when its costs are computed.
    """

    def __init__(self, x, y, metric, projection):
        if projection is not None:
            if callable(projection) and not isinstance(projection, torch.Tensor):
                x, y = projection(x), projection(y)
            else:
                x, y = x @ projection.to(x.dtype), y @ projection.to(y.dtype)
            _check_projected('x', x)
            _check_projected('y', y)
        if not (metric in ('cosine', 'sqeuclidean') or callable(metric)):
            raise ValueError(f"`cost` must be 'cosine', 'sqeuclidean' or a callable, got "
                             f'{metric!r}.')
        self.metric = metric
        self.x, self.y = x, y
        # Inverse norms of the sources (cosine), as F.normalize computes them.
        self.x_scale = (1.0 / x.norm(dim=1).clamp_min(1e-12) if metric == 'cosine' else None)

    def _prep(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(feats, dim=-1) if self.metric == 'cosine' else feats

    def _sources(self, idx: torch.Tensor) -> torch.Tensor:
        """Prepared source rows ``idx`` (all < N)."""
        rows = self.x.index_select(0, idx)
        return rows * self.x_scale[idx, None] if self.x_scale is not None else rows

    def pca_basis(self, dims: int):
        """``(mean, basis (D, dims))`` of the prepared features (randomised PCA, seeded)."""
        dims = min(dims, self.x.shape[1])
        gen = torch.Generator(device='cpu').manual_seed(0)
        # 1024 + 1024 rows: half the time of 2048 + 2048 (21 vs 43 ms at the working
        # point); which one gives the better blocks varies with the draw
        n_s = min(self.x.shape[0], 1024)
        n_t = min(self.y.shape[0], 1024)
        sample = torch.cat([
            self.x[torch.randperm(self.x.shape[0], generator=gen)[:n_s].to(self.x.device)],
            self.y[torch.randperm(self.y.shape[0], generator=gen)[:n_t].to(self.y.device)]])
        sample = self._prep(sample).float()
        mean = sample.mean(0)
        devices = [sample.device] if sample.is_cuda else []
        with torch.random.fork_rng(devices=devices):  # deterministic, global RNG untouched
            torch.manual_seed(0)
            _, _, basis = torch.pca_lowrank(sample - mean, q=min(dims, *sample.shape),
                                            center=False, niter=2)
        return mean, basis

    def inverse_norms(self, feats: torch.Tensor) -> Optional[torch.Tensor]:
        """``(n,)`` inverse norms of ``feats`` as F.normalize applies them (cosine), else None."""
        if self.metric != 'cosine':
            return None
        if feats is self.x:
            return self.x_scale
        return 1.0 / feats.norm(dim=1).clamp_min(1e-12)

    def project(self, feats: torch.Tensor, basis) -> torch.Tensor:
        """``(n, dims)`` coordinates ``(prep(feats) - mean) @ basis``, fp32.

        Cosine: ``prep(x) = x / |x|`` is linear per row, so the raw rows are projected
        and the product scaled, ``(x @ V) / |x| - mean @ V``: no normalised copy of the
        features (34 ms against 97 ms for the sources at SAOT's working point).
        """
        mean, vecs = basis
        shift = mean @ vecs  # (dims,)
        scale = self.inverse_norms(feats)
        out = []
        for i0 in range(0, feats.shape[0], 8192):
            z = feats[i0:i0 + 8192].float() @ vecs  # (chunk, dims)
            if scale is not None:
                z.mul_(scale[i0:i0 + 8192, None].to(z.dtype))
            out.append(z.sub_(shift))
        return torch.cat(out)

    def blocked(self, feats: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """``(num_blocks, block, D)`` prepared features in block order, zero rows as padding."""
        n = feats.shape[0]
        out = feats.new_zeros((blocks.numel(), feats.shape[1]))
        flat = blocks.reshape(-1)
        step = max(1, 8192 // blocks.shape[1]) * blocks.shape[1]
        for i0 in range(0, flat.shape[0], step):
            idx = flat[i0:i0 + step]
            valid = idx < n
            chunk = self._prep(feats[idx.clamp(max=n - 1)])
            out[i0:i0 + idx.shape[0]] = chunk * valid[:, None].to(chunk.dtype)
        return out.view(blocks.shape[0], blocks.shape[1], feats.shape[1])

    def block_cost(self, yb, src_blocks, a) -> torch.Tensor:
        """``(I, T * bt)`` cost between source blocks and target slots.

        Cosine: the mass-weighted average cost over the block, exact
        (:math:`1 - \\langle \\bar x_I, y_j\\rangle`); other metrics: cost to the block mean.
        """
        n = self.x.shape[0]
        wa = _block_weights(a, src_blocks).to(self.x.dtype)  # (I, bs), 0 for padding
        total = wa.sum(1, keepdim=True)
        members = (src_blocks < n).to(wa.dtype)  # a block without mass: its plain mean
        wa = torch.where(total > 0, wa / total.clamp_min(torch.finfo(wa.dtype).tiny),
                         members / members.sum(1, keepdim=True))
        idx = src_blocks.clamp(max=n - 1)  # padding: any row, weight 0
        if self.x_scale is not None:  # mean of the unit rows: weight w_i / |x_i|
            wa = wa * self.x_scale[idx]
        # x_bar_I = sum_i w_i x_i as one weighted embedding-bag sum: the member rows
        # are read in place, never gathered (8 ms against 88 ms at the working point).
        xm = F.embedding_bag(idx, self.x, mode='sum', per_sample_weights=wa)  # (I, D)
        ys = yb.reshape(-1, yb.shape[-1])
        if self.metric == 'cosine':
            return (1.0 - matmul_fp32(xm, ys.t())).to(a.dtype)
        if self.metric == 'sqeuclidean':
            return sqeuclidean_cost(xm, ys).to(a.dtype)
        return self.metric(xm, ys).to(a.dtype)

    def cost(self, xs: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        """``(len(yt), len(xs))`` cost between prepared features, rows = targets."""
        if self.metric == 'cosine':
            return (1.0 - matmul_fp32(yt, xs.t())).clamp_(0.0, 2.0)
        if self.metric == 'sqeuclidean':
            return sqeuclidean_cost(yt, xs)
        return self.metric(xs, yt).t()

    def target_rows(self, yt: torch.Tensor) -> torch.Tensor:
        """``(len(yt), N)`` cost of prepared targets to every source, in source chunks."""
        n = self.x.shape[0]
        return torch.cat([self.cost(self._sources(torch.arange(i0, min(n, i0 + 8192),
                                                               device=self.x.device)), yt)
                          for i0 in range(0, n, 8192)], dim=1)

    def support_cost(self, yb, support, keep, src_blocks, dtype,
                     group: int = 2) -> torch.Tensor:
        """Cost in the padded layout of ``support`` (a flat buffer), ``group`` source blocks
        at a time: the target blocks that keep any of them are gathered, one product
        computed, and its rows of ``bs`` entries copied straight into the layout (rows of
        tiles that their target block does not keep go to scratch rows, cut off at the
        end; see :meth:`_Support.product_rows`). Padding columns get ``_PAD_COST``.

        Source-major because a source block is kept by ~23 target blocks at SAOT's working
        point: products of 128 sources x ~400 targets ran at near full GEMM speed, 0.45 s
        in all with 1.2x the support's entries, against 0.93 s (2.6x the entries) for
        products of 8 consecutive target blocks x the union of their source blocks.

        Returns:
            ``(support.size,)`` flat cost, ``dtype``.
        """
        n, bs, bt = self.x.shape[0], src_blocks.shape[1], support.bt
        js_all, counts, dest, scratch = support.product_rows(keep, group)
        out = torch.full((support.size + scratch * bs,), _PAD_COST, dtype=dtype,
                         device=yb.device)
        out_rows = out.view(-1, bs)  # widths and offsets are whole source blocks
        ys = yb.reshape(-1, yb.shape[-1])
        tile_rows = torch.arange(bt, device=yb.device)
        tgt_all = (js_all[:, None] * bt + tile_rows).reshape(-1)  # target slots, product order
        # Whole groups: a last, partial group gets padding blocks (their tiles, never
        # kept, go to scratch rows), so every product has group * bs columns.
        extra = -src_blocks.shape[0] % group
        src_blocks = torch.cat([src_blocks, src_blocks.new_full((extra, bs), n)])
        padded_blocks = set((src_blocks[:, -1] >= n).nonzero()[:, 0].tolist())
        one = torch.ones((), dtype=ys.dtype, device=ys.device)
        fast = self.metric == 'cosine' and ys.dtype in (torch.float32, torch.float64)
        p0 = d0 = 0
        for q, count in enumerate(counts):
            i0 = q * group
            src = src_blocks[i0:i0 + group].reshape(-1)
            src_c = src.clamp(max=n - 1)
            yt = ys.index_select(0, tgt_all[p0 * bt:(p0 + count) * bt])
            if fast:  # 1 - <y_j, x_i / |x_i|>: unit source rows, one GEMM with its offset
                xs = self.x.index_select(0, src_c).mul_(self.x_scale[src_c, None])
                full = torch.addmm(one, yt, xs.t(), alpha=-1.0).clamp_(0.0, 2.0)
            elif self.metric == 'cosine':  # half features: fp32 product, then scale
                prod = matmul_fp32(yt, self.x.index_select(0, src_c).t())
                full = (1.0 - prod * self.x_scale[src_c][None, :]).clamp_(0.0, 2.0)
            else:
                full = self.cost(self.x.index_select(0, src_c), yt)
            if any(i in padded_blocks for i in range(i0, i0 + group)):
                full[:, src >= n] = _PAD_COST
            rows = count * bt * group
            # (target block, tile row, source block) rows of bs entries -> layout rows
            out_rows.index_copy_(0, dest[d0:d0 + rows], full.reshape(-1, bs).to(dtype))
            p0, d0 = p0 + count, d0 + rows
        return out[:support.size]


def _check_projected(name: str, feats: torch.Tensor) -> None:
    """Name a ``projection`` that made ``name``'s features NaN or inf (they failed later,
    in the SVD of the block ordering's PCA)."""
    if not bool(torch.isfinite(feats).all()):
        raise ValueError(f'`projection` gave non-finite features (NaN or inf) for `{name}`: '
                         'check its values, or the callable, for NaN or overflow.')
