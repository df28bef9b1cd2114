"""Padded width-bucket layout of a block support (block-sparse step 3).

Target blocks with their kept source columns, grouped into a few buckets of one width
so that each half-step is one batched product per bucket; see :class:`_Support`.
"""
import math
from typing import List, Optional

import torch

_MAX_BUCKETS = 8  # width buckets of the padded layout (products per half-step)
_BUCKET_WASTE = 0.1  # stop splitting buckets once padding is <= 10 % of the real columns
_CHUNK_ENTRIES = 1 << 20  # support entries per temporary in rebuilds, log softmins, plans


class _Support:
    """Padded support layout: target block j is a ``(bt, W)`` block of its kept sources.

    Target blocks are sorted by width (kept source columns, whole source blocks) and cut
    into at most ``_MAX_BUCKETS`` contiguous width buckets (greedy splits, each the one
    that removes most padding, until padding is <= ``_BUCKET_WASTE`` of the real
    columns). Bucket k is one dense ``(J_k, bt, W_k)`` tensor, ``W_k`` its widest
    member's width; a block's columns beyond its width point at the dummy source ``N``
    (zero mass, cost ``_PAD_COST``, so their kernel entries are exactly 0). Buckets lie
    back to back in flat buffers. Padding every block to the widest one would have
    tripled the support at SAOT's working point (widths 5-135 source blocks, median 44);
    8 buckets pad it by 10 %.

    ``order[p]``: original index of layout block p; ``tgt`` ``(J, bt)``: target indices of
    the layout rows (``M`` pads), so the loop's rows are the target slots in layout order;
    ``src[k]``: ``(J_k, W_k)`` source indices of bucket k (``N`` pads); ``src_flat``: all
    of them flattened, in the order of the flattened buckets (a row's kept source blocks
    in ascending order, then padding); ``pair_base`` ``(I, J)``: flat offset of the first
    entry of kept tile (i, j), -1 if dropped; ``row_stride`` ``(J,)``: the layout width of
    original target block j.
    """

    def __init__(self, keep, src_blocks, tgt_blocks, num_src, num_tgt):
        bs, self.bt = src_blocks.shape[1], tgt_blocks.shape[1]
        self.pair_block = bs
        counts = keep.sum(0)
        self.order = torch.argsort(counts, stable=True)
        sorted_counts = counts[self.order].tolist()
        self.bounds = _width_buckets(sorted_counts)
        self.tgt = tgt_blocks[self.order]
        self.src, self.offsets, src_block_ids = [], [0], []
        num_i = src_blocks.shape[0]
        for j0, j1 in self.bounds:
            nb = sorted_counts[j1 - 1]
            kept = keep[:, self.order[j0:j1]].t()  # (J_k, I)
            ids = torch.argsort((~kept).to(torch.uint8), dim=1, stable=True)[:, :nb]
            valid = torch.arange(nb, device=keep.device)[None, :] < kept.sum(1, keepdim=True)
            src = torch.where(valid[:, :, None], src_blocks[ids], num_src)
            self.src.append(src.reshape(j1 - j0, nb * bs))
            src_block_ids.append(torch.where(valid, ids, num_i).reshape(-1))
            self.offsets.append(self.offsets[-1] + (j1 - j0) * self.bt * nb * bs)
        self.src_flat = torch.cat([s.reshape(-1) for s in self.src])
        # Column blocks: the layout's columns are whole source blocks (block I = a dummy
        # block of padding), so column vectors move as rows of bs entries in "block
        # order" (column p*bs + r = member r of source block p): ``block_flat`` is the
        # source block of every layout column block, ``col_order`` ((I+1)*bs,) the source
        # (N: padding) of every block-order column, ``col_rank`` (N+1,) the block-order
        # position of every source (N: a position in the dummy block).
        self.block_flat = torch.cat(src_block_ids)
        self.block_offsets = [0]  # start of each bucket in block_flat
        for ids in src_block_ids:
            self.block_offsets.append(self.block_offsets[-1] + ids.shape[0])
        self.col_order = torch.cat([src_blocks.reshape(-1),
                                    src_blocks.new_full((bs,), num_src)])
        self.col_rank = torch.full((num_src + 1,), num_i * bs, dtype=torch.long,
                                   device=keep.device)
        real = self.col_order < num_src
        self.col_rank[self.col_order[real]] = real.nonzero()[:, 0]
        self.col_sizes = [s.numel() for s in self.src]
        self.width = max(s.shape[1] for s in self.src)
        # Flat offset of every kept (source block i, target block j) tile's first entry
        # (row 0, column 0), and the row stride W of each (original) target block.
        bucket_of = torch.cat([torch.full((j1 - j0,), k, dtype=torch.long)
                               for k, (j0, j1) in enumerate(self.bounds)]).to(keep.device)
        first = torch.tensor([j0 for j0, _ in self.bounds], device=keep.device)[bucket_of]
        width = torch.tensor([s.shape[1] for s in self.src], device=keep.device)[bucket_of]
        start = (torch.tensor(self.offsets[:-1], device=keep.device)[bucket_of] +
                 (torch.arange(self.num_blocks, device=keep.device) - first) * self.bt * width)
        self.row_stride = torch.empty_like(width)
        self.row_stride[self.order] = width
        block_start = torch.empty_like(start)
        block_start[self.order] = start
        slot = keep.long().cumsum(0) - 1  # rank of source block i among j's kept ones
        self.pair_base = torch.where(keep, block_start[None, :] + slot * bs, -1)
        real_src = (src_blocks < num_src).sum(1).to(torch.float64)
        real_tgt = (tgt_blocks < num_tgt).sum(1).to(torch.float64)
        self.num_entries = int((real_src[:, None] * keep * real_tgt[None, :]).sum())
        self.num_real_cols = sum(sorted_counts) * bs

    def product_rows(self, keep: torch.Tensor, group: int):
        """Where the rows of source-major cost products go in the flat layout.

        Source blocks are taken ``group`` at a time; group ``q`` computes one product of
        the targets of ``js_q`` (the target blocks keeping any of its source blocks,
        ascending) against its ``group * bs`` sources: ``(|js_q| * bt, group * bs)``,
        read as rows of ``bs`` entries in the order (target block, tile row, source block
        of the group). A row of a kept tile (i, j) goes to the layout row
        ``(pair_base[i, j] + r * row_stride[j]) / bs``; a row of a tile that j does not
        keep (it is computed because j keeps the other block of the group) goes to a
        scratch row past the layout, unique within its group.

        Args:
            keep: ``(I, J)`` kept pairs.
            group: source blocks per product.

        Returns:
            ``(js, counts, dest, scratch)``: ``js`` the concatenated ``js_q`` (long),
            ``counts`` the list of ``|js_q|``, ``dest`` ``(sum_q |js_q| * bt * group,)``
            layout rows (units of ``bs`` entries) in product order, ``scratch`` the
            number of scratch rows needed (at most that of one group).
        """
        num_i, num_j = keep.shape
        bs = self.pair_block
        num_q = -(-num_i // group)
        pad = num_q * group - num_i
        kept = torch.cat([keep, keep.new_zeros((pad, num_j))]).view(num_q, group, num_j)
        union = kept.any(1)  # (Q, J): target blocks of each product
        q_idx, js = union.nonzero(as_tuple=True)  # group-major, ascending j
        counts = union.sum(1).tolist()
        tile_kept = kept[q_idx, :, js]  # (P, group): tile (group source, j) kept
        src_block = q_idx[:, None] * group + torch.arange(group, device=keep.device)
        base = torch.cat([self.pair_base, self.pair_base.new_full((pad, num_j), -1)])
        base = base[src_block, js[:, None]]  # (P, group) flat offset of the tile
        # Unique scratch tiles within a group: rank of a dropped tile among its group's.
        dropped = (~tile_kept).reshape(-1).long()  # (P * group,) in product order
        before = dropped.cumsum(0) - dropped
        sizes = torch.tensor(counts, device=keep.device) * group
        group_start = torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
        rank = before - before[group_start]
        per_group = torch.zeros(num_q, dtype=torch.long, device=keep.device).index_add_(
            0, q_idx, (~tile_kept).sum(1))
        scratch_tiles = int(per_group.max()) if num_q else 0
        r = torch.arange(self.bt, device=keep.device)
        stride = self.row_stride[js]  # (P,)
        layout = (base[:, None, :] + r[None, :, None] * stride[:, None, None]) // bs
        scratch = (self.size // bs + rank.view(-1, 1, group) * self.bt +
                   r[None, :, None])
        dest = torch.where(tile_kept[:, None, :], layout, scratch)  # (P, bt, group)
        return js, counts, dest.reshape(-1), scratch_tiles * self.bt

    @property
    def num_blocks(self) -> int:
        return self.tgt.shape[0]

    @property
    def num_buckets(self) -> int:
        return len(self.bounds)

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def view(self, flat: torch.Tensor, k: int) -> torch.Tensor:
        """Bucket k of a flat support buffer, as ``(J_k, bt, W_k)``."""
        j0, j1 = self.bounds[k]
        return flat[self.offsets[k]:self.offsets[k + 1]].view(j1 - j0, self.bt, -1)

    def rows(self, k: int, c0: int = 0, c1: Optional[int] = None) -> slice:
        """Loop rows (target slots) of blocks ``c0:c1`` of bucket k."""
        j0, j1 = self.bounds[k]
        return slice((j0 + c0) * self.bt, (j0 + (j1 - j0 if c1 is None else c1)) * self.bt)

    def chunks(self, max_entries: int = _CHUNK_ENTRIES):
        """Yield ``(k, c0, c1)``: consecutive block ranges of bucket k, at most
        ``max_entries`` support entries each (at least one block), in layout order."""
        for k, (j0, j1) in enumerate(self.bounds):
            step = max(1, max_entries // (self.bt * self.src[k].shape[1]))
            for c0 in range(0, j1 - j0, step):
                yield k, c0, min(j1 - j0, c0 + step)

    def gather_cols(self, values: torch.Tensor):
        """``values[src[k]]`` for every bucket k, moved as rows of ``bs`` entries.

        ``values`` ``(N + 1,)`` (index N: padding) is put in block order (one gather of
        (I+1)*bs entries), then the rows of the layout's column blocks are gathered:
        0.1 ms at SAOT's working point (555k padded columns) against 0.4-1.1 ms for one
        gather of single entries.
        """
        by_block = values.index_select(0, self.col_order).view(-1, self.pair_block)
        flat = by_block.index_select(0, self.block_flat).view(-1)
        return [part.view(s.shape) for part, s in zip(flat.split(self.col_sizes), self.src)]

    def by_block(self, values: torch.Tensor) -> torch.Tensor:
        """``(I + 1, bs, ...)``: per-source ``values`` ``(N + 1, ...)`` in block order
        (row N, padding, wherever a block has no source)."""
        return values.index_select(0, self.col_order).view(-1, self.pair_block,
                                                            *values.shape[1:])

    def chunk_cols(self, by_block: torch.Tensor, k: int, c0: int, c1: int) -> torch.Tensor:
        """``(c1 - c0, W_k, ...)``: the values of the columns of blocks ``c0:c1`` of bucket
        k, ``by_block`` from :meth:`by_block`, gathered as whole source blocks (for C
        values per source: rows of ``bs * C`` entries instead of single entries)."""
        nb = self.src[k].shape[1] // self.pair_block
        start = self.block_offsets[k]
        ids = self.block_flat[start + c0 * nb:start + c1 * nb]
        return by_block.index_select(0, ids).view(c1 - c0, nb * self.pair_block,
                                                   *by_block.shape[2:])

    def scatter_cols(self, parts, size: int) -> torch.Tensor:
        """Sum of the flattened per-bucket ``(J_k, W_k)`` column values into ``size``
        sources (``N + 1``; entry N: padding), as rows of ``bs`` entries added into the
        source blocks (0.2 ms at the working point against 0.5-0.9 ms for one
        ``scatter_add_`` of single entries), then put back in source order."""
        flat = torch.cat([p.reshape(-1) for p in parts]).view(-1, self.pair_block)
        sums = flat.new_zeros((self.col_order.shape[0] // self.pair_block, self.pair_block))
        sums.index_add_(0, self.block_flat, flat)
        return sums.view(-1).index_select(0, self.col_rank[:size])

    def unpad_targets(self, values: torch.Tensor, num_tgt: int) -> torch.Tensor:
        out = values.new_empty(num_tgt)
        flat = self.tgt.reshape(-1)
        valid = flat < num_tgt
        out[flat[valid]] = values[valid]
        return out


def _width_buckets(widths: List[int]):
    """Split ascending ``widths`` into at most ``_MAX_BUCKETS`` ``(j0, j1)`` ranges,
    greedily: each split is the one that removes most padding (a block is padded to the
    widest of its range), until padding is <= ``_BUCKET_WASTE`` of the real total."""
    w = torch.tensor(widths, dtype=torch.float64)
    real = float(w.sum())
    bounds = [(0, len(widths))]

    def padded():
        return sum(widths[j1 - 1] * (j1 - j0) for j0, j1 in bounds)

    while len(bounds) < _MAX_BUCKETS and padded() > (1.0 + _BUCKET_WASTE) * real:
        best = (0.0, None, None)
        for b, (j0, j1) in enumerate(bounds):
            if j1 - j0 < 2:
                continue
            s = torch.arange(j0 + 1, j1)
            # padding removed by splitting [j0, j1) before s: (W_max - w[s-1]) (s - j0)
            gain = (widths[j1 - 1] - w[s - 1]) * (s - j0)
            g, i = gain.max(0)
            if float(g) > best[0]:
                best = (float(g), b, int(s[i]))
        if best[1] is None:
            break
        j0, j1 = bounds[best[1]]
        bounds[best[1]:best[1] + 1] = [(j0, best[2]), (best[2], j1)]
    return bounds


def _padded_log(weights, flat_idx):
    padded = torch.cat([torch.log(weights), weights.new_full((1,), -math.inf)])
    return padded[flat_idx].unsqueeze(0)
