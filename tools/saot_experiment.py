"""Pseudo-label the demo target train split with every SAOT ablation and score it.

Extracts frozen DINOv2 ViT-S/14 features once (cached by ``tools/saot_features.py``),
fits :class:`mmseg_saot.models.labelers.SAOTLabeler` for each method on the GTA5-like
source set, labels the Cityscapes-like target train split, and prints per-class IoU
against its ground truth (19 classes, 255 ignore) side by side::

    python tools/saot_experiment.py                 # all methods, default settings
    python tools/saot_experiment.py --methods nn saot --beta 0.5 --rho 0.1 1.0

Reported per method: mIoU of the unfiltered pseudo-labels (every pixel, pixels
without mass count as misses), mIoU on the pixels kept by the confidence filter,
and the kept fraction. Tune on this (train) split only; val is never read.
"""
import argparse
import math
import os.path as osp
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from saot_features import build_cache  # noqa: E402

from mmseg_saot.datasets.cityscapes_labels import CLASSES  # noqa: E402
from mmseg_saot.models.labelers import METHODS, SAOTLabeler  # noqa: E402

NUM_CLASSES = len(CLASSES)


def confusion(pred: torch.Tensor, gt: torch.Tensor, num_classes: int = NUM_CLASSES,
              ignore_index: int = 255) -> torch.Tensor:
    """``(C, C + 1)`` confusion counts, rows = ground truth, last column = predicted ignore.

    Pixels whose ground truth is ``ignore_index`` are skipped.
    """
    valid = gt != ignore_index
    g = gt[valid].long()
    p = pred[valid].long()
    p = torch.where(p == ignore_index, torch.full_like(p, num_classes), p)
    return torch.bincount(g * (num_classes + 1) + p,
                          minlength=num_classes * (num_classes + 1)).reshape(
                              num_classes, num_classes + 1)


def iou(conf: torch.Tensor) -> torch.Tensor:
    """Per-class IoU from a :func:`confusion` matrix; NaN where the union is empty.

    Predicted-ignore pixels (last column) are misses of their ground-truth class.
    """
    inter = conf.diagonal().double()
    union = conf.sum(1).double() + conf[:, :-1].sum(0).double() - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, math.nan))


def score(pred_raw: torch.Tensor, pred_kept: torch.Tensor, gt: torch.Tensor) -> dict:
    """IoUs unfiltered and on kept pixels (dropped pixels excluded), and the kept share."""
    gt_valid = gt != 255
    kept = gt_valid & (pred_kept != 255)
    gt_kept = torch.where(kept, gt, torch.full_like(gt, 255))
    return dict(iou=iou(confusion(pred_raw, gt)), iou_kept=iou(confusion(pred_kept, gt_kept)),
                kept=float(kept.sum()) / max(1, int(gt_valid.sum())))


def print_table(results: Dict[str, dict], present: torch.Tensor) -> None:
    """Per-class IoU (unfiltered) per method, then mIoU lines."""
    names = list(results)
    width = max(11, *(len(n) + 1 for n in names))
    print('class'.ljust(14) + ''.join(n.rjust(width) for n in names))
    for c, cls in enumerate(CLASSES):
        if not present[c]:
            continue
        print(cls.ljust(14) + ''.join(f'{100 * results[n]["iou"][c]:{width}.1f}' for n in names))
    for key, label in (('iou', 'mIoU (all)'), ('iou_kept', 'mIoU (kept)')):
        print(label.ljust(14) + ''.join(
            f'{100 * results[n][key][present].nanmean():{width}.1f}' for n in names))
    print('kept %'.ljust(14) + ''.join(f'{100 * results[n]["kept"]:{width}.1f}' for n in names))
    print('seconds'.ljust(14) + ''.join(f'{results[n]["seconds"]:{width}.1f}' for n in names))


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default='data/demo')
    parser.add_argument('--cache', default='work_dirs/saot_experiment/features.pt')
    parser.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS))
    parser.add_argument('--epsilon', type=float, default=0.05)
    parser.add_argument('--rho', type=float, nargs='+', default=[0.1, 1.0],
                        help='rho, or rho_src rho_tgt (cost units; inf = balanced)')
    parser.add_argument('--alpha', type=float, default=1.0)
    parser.add_argument('--beta', type=float, default=1.0)
    parser.add_argument('--k', type=int, default=4, help='source images retrieved per target')
    parser.add_argument('--metric-rank', type=int, default=32)
    parser.add_argument('--metric-steps', type=int, default=150)
    parser.add_argument('--metric-lr', type=float, default=1e-2)
    parser.add_argument('--prototypes', type=int, default=4)
    parser.add_argument('--quantile', type=float, default=0.2)
    parser.add_argument('--threads', type=int, default=1,
                        help='1 is fastest for these many small solves on a shared CPU')
    parser.add_argument('--save-metric', default='work_dirs/saot_experiment/saot_labeler.pth')
    return parser.parse_args(argv)


def main(argv: List[str] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = build_cache(args.root, out=args.cache, threads=args.threads)
    gt = cache['target_gt']
    rho = args.rho[0] if len(args.rho) == 1 else tuple(args.rho[:2])
    common = dict(num_classes=NUM_CLASSES, feat_dim=cache['source_feats'].shape[1],
                  epsilon=args.epsilon, rho=rho, alpha=args.alpha, beta=args.beta,
                  num_neighbors=args.k, metric_rank=args.metric_rank,
                  metric_steps=args.metric_steps, metric_lr=args.metric_lr,
                  num_prototypes=args.prototypes, confidence_quantile=args.quantile)
    results, trained = {}, None
    for method in args.methods:
        t0 = time.perf_counter()
        labeler = SAOTLabeler(method=method, **common)
        if METHODS[method]['metric'] and trained is not None:
            labeler.load_state_dict(trained, strict=False)  # same seed: same metric
            labeler.fit(cache['source_feats'], cache['source_labels'], train=False)
        else:
            labeler.fit(cache['source_feats'], cache['source_labels'])
        if METHODS[method]['metric'] and trained is None:
            trained = {k: v for k, v in labeler.state_dict().items() if k.startswith('metric.')}
            log = labeler.training_log
            print(f'metric: {len(log.losses)} steps in {log.seconds:.1f} s, transfer loss '
                  f'{sum(log.losses[:20]) / 20:.3f} (first 20) -> '
                  f'{sum(log.losses[-20:]) / 20:.3f} (last 20)')
        out = labeler(cache['target_feats'], out_size=tuple(gt.shape[-2:]))
        results[method] = score(out.raw_labels, out.labels, gt)
        results[method]['seconds'] = time.perf_counter() - t0
        if method == 'saot' and args.save_metric:
            torch.save(labeler.state_dict(), args.save_metric)
    present = torch.bincount(gt[gt != 255].long(), minlength=NUM_CLASSES) > 0
    print(f'settings: {vars(args)}')
    print_table(results, present)
    if 'nn' in results and 'saot' in results:
        m = {n: float(r['iou'][present].nanmean()) for n, r in results.items()}
        best_ablation = max(v for n, v in m.items() if n != 'saot')
        print(f'saot / nn = {m["saot"] / m["nn"]:.2f}x; saot - best ablation = '
              f'{100 * (m["saot"] - best_ablation):+.1f} mIoU')
    return results


if __name__ == '__main__':
    main()
