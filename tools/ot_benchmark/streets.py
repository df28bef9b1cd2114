"""Real frozen ViT-S/14 features of synthetic street scenes at SAOT's working point
(``--block-data streets``), cached one file per seed."""
import json
import os
import subprocess
import sys

import torch

from .measure import SCRIPT
from .problems import ROOT

STREETS_SIZE = (518, 1036)  # 37 x 74 patches of 14 px, as the synthetic working point

WEIGHTS_HINT = 'run `make weights` (README, "Offline weights")'


def streets_seed_file(folder, seed):
    """The cached features of one street-scene set: one file per seed."""
    return os.path.join(folder, f'seed_{seed}.pt')


def streets_features(seeds, folder, weights=None):
    """Cache real frozen features of street scenes at SAOT's working point in ``folder``.

    For each seed, one target in the demo's "real" style and 8 sources in its "game"
    style (``mmseg_saot.datasets.synthetic_streets``), 1036 x 518 pixels, through the
    offline DINOv2 ViT-S/14 (last block, d 384), with each patch's majority label. Each
    seed is written to its own file as soon as it is done (about 30 s on 2 CPU cores) and
    never recomputed. The backbone runs in a fresh subprocess (the full package, not
    :func:`import_ot`'s), which finds the weights as the configs do (``weights``: None)
    or uses the file given.
    """
    missing = [seed for seed in seeds if not os.path.exists(streets_seed_file(folder, seed))]
    if not missing:
        return
    if weights is not None and not os.path.exists(os.path.expanduser(weights)):
        sys.exit(f'--block-data streets needs the offline DINOv2 ViT-S/14 weights; {weights} '
                 f'does not exist: {WEIGHTS_HINT}.')
    spec = dict(kind='streets_features', seeds=missing, folder=folder, weights=weights)
    proc = subprocess.run([sys.executable, SCRIPT, '--worker', json.dumps(spec)], cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f'computing the street-scene features failed (exit {proc.returncode}; '
                 'its message is above)')


def streets_features_worker(spec):
    """Render and encode the scenes of :func:`streets_features` (in its subprocess)."""
    sys.path.insert(0, ROOT)
    import mmseg_saot  # noqa: F401  (the compat shims mmseg needs here)
    from mmseg_saot.datasets import synthetic_streets as streets
    from mmseg_saot.datasets.cityscapes_labels import label_ids_to_train_ids
    from mmseg_saot.models.backbones.dinov2 import DINOv2Backbone
    from mmseg_saot.models.labelers.patch_labels import patch_labels
    from mmseg_saot.utils.atomic import atomic_torch_save
    from mmseg_saot.utils.imagenet import normalize_images
    from mmseg_saot.utils.weights import DEFAULT_WEIGHTS_FILE, default_weights_cache
    weights = os.path.expanduser(spec['weights'] or
                                 str(default_weights_cache() / DEFAULT_WEIGHTS_FILE))
    if not os.path.exists(weights):
        sys.exit(f'--block-data streets needs the offline DINOv2 ViT-S/14 weights at '
                 f'{weights}: {WEIGHTS_HINT}.')
    backbone = DINOv2Backbone('vit_small_patch14_dinov2', out_indices=[11],
                              checkpoint=weights).eval()
    height, width = STREETS_SIZE
    os.makedirs(spec['folder'], exist_ok=True)
    for seed in spec['seeds']:
        images, labels = [], []
        for index in range(9):  # index 0: the target
            style = streets.TARGET_STYLE if index == 0 else streets.SOURCE_STYLE
            image, label_ids = streets.render_scene([seed, index], style, width=width,
                                                    height=height)
            images.append(torch.from_numpy(image).permute(2, 0, 1).float())
            labels.append(torch.from_numpy(label_ids_to_train_ids(label_ids)).long())
        images = normalize_images(torch.stack(images))
        with torch.no_grad():
            feats = torch.cat([backbone(images[i:i + 3])[-1] for i in range(0, 9, 3)])
        # a finished seed survives an interrupt
        atomic_torch_save(dict(feats=feats.half(),
                               labels=patch_labels(torch.stack(labels)).to(torch.uint8)),
                          streets_seed_file(spec['folder'], seed))
        print(f'  street scenes seed {seed}: features {tuple(feats.shape)}', flush=True)
    return dict(seeds=spec['seeds'])


def streets_problem(folder, seed):
    """Sources (8 images, labelled patches only) and target of one cached scene set.

    Each domain's mean feature is removed before normalising, as ``SAOTLabeler`` does
    with ``center_features=True``.

    Returns:
        ``(source_feats, source_labels, target_feats, target_labels)``; target labels
        are 255 where a patch has no majority class.
    """
    import torch.nn.functional as F
    entry = torch.load(streets_seed_file(folder, seed))
    feats = entry['feats'].float().flatten(2).transpose(1, 2)  # (9, M, D)
    labels = entry['labels'].long().flatten(1)
    xs, ls = feats[1:].flatten(0, 1), labels[1:].flatten()
    labelled = ls != 255
    xs, ls = xs[labelled], ls[labelled]
    xt, lt = feats[0], labels[0]
    return (F.normalize(xs - xs.mean(0), dim=1), ls, F.normalize(xt - xt.mean(0), dim=1), lt)
