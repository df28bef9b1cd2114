"""SAOT pseudo-labeller: OT label transfer with a learned metric and class prototypes."""
import math
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import nn

from mmseg_saot.ot import block_sparse_sinkhorn, sinkhorn, transfer_labels
from mmseg_saot.utils.errors import ConfigError
from .baselines import baseline_transfer
from .confidence import filter_confidence, ignore_outside
from .metric import LowRankMetric
from .metric_training import MetricTrainingLog, train_metric
from .options import check_labeler_options
from .patch_labels import patch_probs_to_pixels
from .prototypes import ClassPrototypes
from .retrieval import global_descriptor, retrieve

#: Each method is a set of switches of the single labelling path (ablation ladder).
METHODS: Dict[str, dict] = {
    'nn': dict(transfer='nn', metric=False, prior=False, balanced=False),
    'knn': dict(transfer='knn', metric=False, prior=False, balanced=False),
    'ot_balanced': dict(transfer='ot', metric=False, prior=False, balanced=True),
    'ot_unbalanced': dict(transfer='ot', metric=False, prior=False, balanced=False),
    'ot_metric': dict(transfer='ot', metric=True, prior=False, balanced=False),
    'saot': dict(transfer='ot', metric=True, prior=True, balanced=False),
}
SOLVERS = ('auto', 'dense', 'block_sparse')


@dataclass
class PseudoLabels:
    """Pseudo-labels of B target images.

    Attributes:
        labels: ``(B, H, W)`` long, confidence-filtered (``ignore_index`` = dropped).
        raw_labels: ``(B, H, W)`` long, before filtering (ignore only where no mass).
        confidence: ``(B, H, W)`` float in [0, 1], never NaN.
        patch_probs: ``(B, C, h, w)`` transferred soft labels (zero where no mass).
        patch_mass: ``(B, h, w)`` mass received from labelled sources.
        all_ignore: ``(B,)`` bool, images whose filtered labels are all ignore.
    """

    labels: torch.Tensor
    raw_labels: torch.Tensor
    confidence: torch.Tensor
    patch_probs: torch.Tensor
    patch_mass: torch.Tensor
    all_ignore: torch.Tensor


@MODELS.register_module()
class SAOTLabeler(nn.Module):
    """Dense label transfer from labelled source images to a target image (SAOT).

    For a target image with patch features :math:`t_j` (M patches), the K source
    images with the most similar global descriptor (mean of unit patch features) are
    retrieved and their labelled patches :math:`x_i` (label :math:`y_i`) pooled. With
    :math:`\\phi` the learned metric (:class:`LowRankMetric`) and :math:`p_{c,k}` the
    class prototypes (:class:`ClassPrototypes`, k-means of :math:`\\phi(x)` per class),
    the fused cost is

    .. math::
        C_{ij} = \\alpha\\,\\big(1 - \\cos(\\phi(x_i), \\phi(t_j))\\big)
               + \\beta\\,\\big(1 - \\max_k \\cos(\\phi(t_j), p_{y_i,k})\\big),

    the plan solves unbalanced entropic OT (:func:`mmseg_saot.ot.sinkhorn`, uniform
    marginals, ``epsilon``, ``rho = (rho_src, rho_tgt)``): with ``rho_src`` finite,
    source patches of classes absent from the target need not send their mass,
    and the soft labels are :math:`\\hat Y = \\mathrm{diag}(P^\\top 1)^{-1} P^\\top Y`.
    Pseudo-labels are the argmax of :math:`\\hat Y` bilinearly upsampled to pixels,
    with confidence the max probability; low-confidence pixels become ignore
    (:func:`filter_confidence`), as do pixels of patches that received no mass.

    ``method`` switches parts of this one path on and off (see :data:`METHODS`):
    ``'nn'`` (hard cosine 1-NN), ``'knn'`` (softmax-kNN), ``'ot_balanced'``
    (:math:`\\phi = I`, :math:`\\beta = 0`, rho = inf), ``'ot_unbalanced'``
    (:math:`\\phi = I`, :math:`\\beta = 0`), ``'ot_metric'`` (learned :math:`\\phi`,
    :math:`\\beta = 0`), ``'saot'`` (everything). All use the same retrieval.

    Usage: :meth:`fit` on source features and labels once (trains the metric, builds
    prototypes, stores the source bank), then call the module on target features.
    ``state_dict`` holds the metric and the prototypes; the source bank is not saved.

    Args:
        method: one of :data:`METHODS`.
        num_classes: C. ignore_index: label that never votes and marks dropped pixels.
        feat_dim: D of the features.
        epsilon: entropic regularisation, in cost units (the costs lie in [0, 2]).
        rho: marginal penalty in cost units, a number or ``(rho_src, rho_tgt)``;
            ``inf`` is a hard marginal (``'ot_balanced'`` forces inf on both sides).
        alpha, beta: weights of the appearance and prior costs.
        num_neighbors: K source images retrieved per target.
        solver: ``'dense'`` (:func:`sinkhorn`), ``'block_sparse'``
            (:func:`block_sparse_sinkhorn` with the fused cost as its ``cost=``
            callable) or ``'auto'`` (dense when ``N * M <= dense_max_entries``).
        dense_max_entries: the ``'auto'`` switch point on CPU (measured there:
            block-sparse wins above ~4M entries).
        dense_max_entries_gpu: the switch point on a GPU, where a dense solve is
            memory-bound and fast (H200, 21904 x 2738 working point: dense 0.03 s,
            block-sparse 0.17 s); 2^28 entries = 1 GiB of fp32 cost.
        coverage: block-sparse support: the estimated share of each target's mass
            that its kept source blocks carry (``block_sparse_sinkhorn``'s coverage
            rule). 0.75 kept 13-49 % of the entries on draws of the synthetic working
            point and changed 0.1-3.5 % of the labels (near-ties of the dense vote);
            0.95 kept 36-70 % and changed at most 0.95 %
            (``benchmarks/ot_cpu_block_seeds.md``). On real ViT-S/14 features of
            street scenes: 0.75 kept 20-27 % and changed 2.2-3.9 %, 0.95 kept 32-40 %
            and changed 0.9-1.4 % (``benchmarks/ot_cpu_block_streets*.md``).
        num_iters, tol: Sinkhorn stopping rule of the labelling solves. The argmax
            labels are insensitive to it: on the demo, tol 1e-2 gave the same patch
            mIoU as 1e-5 (to 1e-4) at 2-3x less time. Metric training keeps its own
            tight tol (its implicit gradient assumes convergence).
        metric_rank: rank of the metric correction.
        metric_steps, metric_lr, metric_pairs, metric_patches: metric training (see
            :func:`train_metric`); it uses this labeller's ``epsilon`` and ``rho``.
        num_prototypes: prototypes per class.
        center_features: subtract the mean feature of each domain first (the source
            bank's mean, and the mean over the target batch passed to ``forward``:
            pass many target images at once). A shared style direction of frozen
            features dominates the cosine otherwise and squeezes all costs together;
            on the demo it lifted balanced-free OT from 14 to 23 patch mIoU.
        knn_k, knn_temperature: the ``'knn'`` baseline.
        confidence_mode, confidence_threshold, confidence_quantile: see
            :func:`filter_confidence`.
        seed: seed of the metric initialisation and training, and of k-means.
    """

    def __init__(self,
                 method: str = 'saot',
                 num_classes: int = 19,
                 ignore_index: int = 255,
                 feat_dim: int = 384,
                 epsilon: float = 0.05,
                 rho: Union[float, Tuple[float, float]] = (0.1, 1.0),
                 alpha: float = 1.0,
                 beta: float = 1.0,
                 num_neighbors: int = 4,
                 solver: str = 'auto',
                 dense_max_entries: int = 1 << 22,
                 dense_max_entries_gpu: int = 1 << 28,
                 coverage: float = 0.75,
                 num_iters: int = 200,
                 tol: float = 1e-2,
                 metric_rank: int = 32,
                 metric_steps: int = 150,
                 metric_lr: float = 1e-2,
                 metric_pairs: int = 4,
                 metric_patches: int = 256,
                 num_prototypes: int = 4,
                 knn_k: int = 30,
                 knn_temperature: float = 0.02,
                 confidence_mode: str = 'quantile',
                 confidence_threshold: float = 0.0,
                 confidence_quantile: float = 0.2,
                 center_features: bool = True,
                 seed: int = 0) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f'SAOTLabeler: method must be one of {list(METHODS)}, got '
                              f'{method!r}.')
        if solver not in SOLVERS:
            raise ConfigError(f'SAOTLabeler: solver must be one of {SOLVERS}, got {solver!r}.')
        check_labeler_options(locals())
        self.method, self.switches = method, METHODS[method]
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.epsilon = epsilon
        rho_pair = tuple(rho) if isinstance(rho, Sequence) else (rho, rho)
        self.rho = (math.inf, math.inf) if self.switches['balanced'] else rho_pair
        self.alpha, self.beta = alpha, beta
        self.num_neighbors, self.solver = num_neighbors, solver
        self.dense_max_entries, self.coverage = dense_max_entries, coverage
        self.dense_max_entries_gpu = dense_max_entries_gpu
        self.num_iters, self.tol = num_iters, tol
        self.metric_steps, self.metric_lr = metric_steps, metric_lr
        self.metric_pairs, self.metric_patches = metric_pairs, metric_patches
        self.knn_k, self.knn_temperature = knn_k, knn_temperature
        self.confidence_mode = confidence_mode
        self.confidence_threshold = confidence_threshold
        self.confidence_quantile = confidence_quantile
        self.center_features, self.seed = center_features, seed
        self.metric = LowRankMetric(feat_dim, metric_rank if self.switches['metric'] else 0,
                                    seed=seed)
        self.prototypes = ClassPrototypes(num_classes, feat_dim, num_prototypes, seed=seed)
        self.training_log: Optional[MetricTrainingLog] = None
        for name in ('bank_feats', 'bank_labels', 'bank_desc'):
            self.register_buffer(name, None, persistent=False)
        self.register_buffer('source_mean', torch.zeros(feat_dim))
        # mean target feature (see fit_target); all zeros = not set: forward then
        # centres on the mean over the target batch it is given
        self.register_buffer('target_mean', torch.zeros(feat_dim))

    # ------------------------------------------------------------------ source side
    def fit(self, source_feats: torch.Tensor, source_labels: torch.Tensor,
            train: bool = True) -> 'SAOTLabeler':
        """Store the source bank; train the metric and build prototypes as switched.

        Args:
            source_feats: ``(S, D, h, w)`` frozen source features.
            source_labels: ``(S, h, w)`` patch labels, ``ignore_index`` allowed.
            train: train the metric (False keeps loaded weights).

        Raises:
            ValueError: shape mismatch, or no labelled source patch at all.
        """
        if source_feats.dim() != 4 or source_labels.shape != (source_feats.shape[0],
                                                              *source_feats.shape[2:]):
            raise ValueError('SAOTLabeler.fit: expected source_feats (S, D, h, w) and '
                             f'source_labels (S, h, w), got {tuple(source_feats.shape)} and '
                             f'{tuple(source_labels.shape)}.')
        labels = source_labels.flatten(1).long()
        labelled = (labels != self.ignore_index).any(1)  # images that can vote
        if not bool(labelled.any()):
            raise ValueError(f'SAOTLabeler.fit: every source label is ignore_index='
                             f'{self.ignore_index}; there is no labelled source patch to '
                             'transfer labels from.')
        feats = source_feats.flatten(2).transpose(1, 2).float()[labelled]  # (S, P, D)
        labels = labels[labelled]
        if self.center_features:
            self.source_mean = feats.mean((0, 1))
            feats = feats - self.source_mean
        self.bank_feats, self.bank_labels = feats, labels
        self.bank_desc = global_descriptor(feats)
        if train and self.trains_metric:
            self._train_metric(feats, labels)
        if self.switches['prior']:
            keep = labels != self.ignore_index
            with torch.no_grad():
                self.prototypes.fit(self.metric(feats[keep]), labels[keep], self.ignore_index)
        return self

    @property
    def trains_metric(self) -> bool:
        """Whether :meth:`fit` trains the metric (on pairs of source images: it needs
        two with labelled patches)."""
        return bool(self.switches['metric'] and self.metric_steps > 0 and self.metric.rank)

    def _train_metric(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Train the metric from its seeded start (a second fit gives the first's
        metric)."""
        self.metric.reset(self.seed)
        self.training_log = train_metric(
            self.metric, feats, labels, self.num_classes, steps=self.metric_steps,
            pairs_per_step=self.metric_pairs, patches_per_image=self.metric_patches,
            lr=self.metric_lr, epsilon=self.epsilon, rho=self.rho, seed=self.seed,
            ignore_index=self.ignore_index)

    @property
    def training_seconds(self) -> float:
        """Seconds of the metric training of this labeller (0: none, or loaded)."""
        return self.training_log.seconds if self.training_log is not None else 0.0

    # ------------------------------------------------------------------ target side
    @torch.no_grad()
    def fit_target(self, target_feats: torch.Tensor) -> 'SAOTLabeler':
        """Fix the target domain's mean feature (used when ``center_features``).

        Without it :meth:`forward` centres on the mean of the batch it is given, so a
        label would depend on which images share its batch. Fit it once on a fixed
        sample of the target set to make every image's label independent of batching
        (resumed and sharded labelling then give identical results).

        Args:
            target_feats: ``(B, D, h, w)`` frozen features of a sample of target images.
        """
        self.target_mean = target_feats.flatten(2).float().mean((0, 2)).to(self.target_mean)
        return self

    @torch.no_grad()
    def forward(self, target_feats: torch.Tensor,
                out_size: Optional[Tuple[int, int]] = None,
                valid_size: Optional[Sequence] = None) -> PseudoLabels:
        """Pseudo-label target images.

        Args:
            target_feats: ``(B, D, h, w)`` frozen target features.
            out_size: ``(H, W)`` of the returned label maps (default ``(h, w)``).
            valid_size: ``(H', W')``, or one per image: only the top-left ``H' x W'``
                pixels of a map are image (the rest pads the image to whole patches, or
                to the batch's largest image, and is cut off later); the confidence
                filter ranks those alone, and ``labels`` are ignore outside them.
                Default: the whole map.

        Returns:
            :class:`PseudoLabels`; an image whose labels end up all ignore is flagged in
            ``all_ignore`` and reported by a ``UserWarning``.
        """
        if self.bank_feats is None:
            raise RuntimeError('SAOTLabeler: call fit(source_feats, source_labels) first.')
        batch, _, height, width = target_feats.shape
        out_size = tuple(out_size or (height, width))
        tgt = target_feats.flatten(2).transpose(1, 2).float()  # (B, M, D)
        if self.center_features:
            fixed = bool(self.target_mean.any())
            tgt = tgt - (self.target_mean if fixed else tgt.mean((0, 1)))
        neighbours = retrieve(global_descriptor(tgt), self.bank_desc, self.num_neighbors)
        probs, masses, raw, conf = [], [], [], []
        for b in range(batch):
            src = self.bank_feats[neighbours[b]].flatten(0, 1)
            lab = self.bank_labels[neighbours[b]].flatten()
            keep = lab != self.ignore_index
            p, m = self.transfer(src[keep], lab[keep], tgt[b])  # (M, C), (M,)
            p = p.t().reshape(1, self.num_classes, height, width)
            probs.append(p[0])
            masses.append(m.reshape(height, width))
            lab_px, conf_px = self._to_pixels(p, out_size)
            raw.append(lab_px)
            conf.append(conf_px)
        raw_labels, confidence = torch.stack(raw), torch.stack(conf)
        inside = ignore_outside(raw_labels, valid_size, self.ignore_index)
        # per image: a class's confidence quantile must not depend on the other images
        # of the call (labelling one image at a time or in a batch gives the same labels)
        labels = torch.stack([
            filter_confidence(inside[b], confidence[b], mode=self.confidence_mode,
                              threshold=self.confidence_threshold,
                              quantile=self.confidence_quantile,
                              num_classes=self.num_classes, ignore_index=self.ignore_index)
            for b in range(batch)])
        all_ignore = (labels == self.ignore_index).flatten(1).all(1)
        if bool(all_ignore.any()):
            warnings.warn(f'SAOTLabeler: {int(all_ignore.sum())} of {batch} target images got '
                          'no pseudo-label at all (every pixel ignore: no transported mass '
                          'or all below the confidence filter); see PseudoLabels.all_ignore.')
        return PseudoLabels(labels=labels, raw_labels=raw_labels, confidence=confidence,
                            patch_probs=torch.stack(probs), patch_mass=torch.stack(masses),
                            all_ignore=all_ignore)

    def transfer(self, src: torch.Tensor, src_labels: torch.Tensor,
                 tgt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Soft labels of one target from pooled labelled sources.

        Args:
            src: ``(N, D)`` labelled source features; src_labels: ``(N,)``.
            tgt: ``(M, D)`` target features.

        Returns:
            ``(probs (M, C), mass (M,))``: zero rows and mass where nothing arrived.
        """
        kind = self.switches['transfer']
        if kind != 'ot':
            return baseline_transfer(kind, src, src_labels, tgt, self.num_classes,
                                     knn_k=self.knn_k, knn_temperature=self.knn_temperature,
                                     ignore_index=self.ignore_index)
        xs, yt = self.fused_features(src, src_labels, tgt)
        limit = self.dense_max_entries if xs.device.type == 'cpu' else self.dense_max_entries_gpu
        dense = (self.solver == 'dense' or (self.solver == 'auto' and
                                            xs.shape[0] * yt.shape[0] <= limit))
        if dense:
            result = sinkhorn(self.fused_cost(xs, yt), epsilon=self.epsilon, rho=self.rho,
                              num_iters=self.num_iters, tol=self.tol, warn=False)
        else:
            result = block_sparse_sinkhorn(xs, yt, epsilon=self.epsilon, rho=self.rho,
                                           cost=self.fused_cost, coverage=self.coverage,
                                           num_iters=self.num_iters, tol=self.tol,
                                           warn=False)
        out = transfer_labels(result, src_labels, self.num_classes,
                              ignore_index=self.ignore_index)
        return torch.nan_to_num(out.probs.float()), torch.nan_to_num(out.mass.float())

    def fused_features(self, src: torch.Tensor, src_labels: torch.Tensor,
                       tgt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Features whose :meth:`fused_cost` is the SAOT cost ``C`` (see the class doc).

        Sources: ``[phi(x_i) / |phi(x_i)|, onehot(y_i)]``; targets:
        ``[phi(t_j) / |phi(t_j)|, Q(t_j)]`` with ``Q`` the ``(C,)`` prior costs of the
        classes. The cost is bilinear in them, so block means (block-sparse selection)
        are exact. Without the prior the extra columns are left out.

        Returns:
            ``(N, D [+ C])`` and ``(M, D [+ C])`` float tensors.
        """
        fx = F.normalize(self.metric(src.float()), dim=1)
        fy = F.normalize(self.metric(tgt.float()), dim=1)
        if not self.switches['prior']:
            return fx, fy
        onehot = F.one_hot(src_labels.long(), self.num_classes).float()
        return torch.cat([fx, onehot], 1), torch.cat([fy, self.prototypes.class_cost(fy).t()], 1)

    def fused_cost(self, xs: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        """``(n, m)`` fused cost of blocks of :meth:`fused_features` rows.

        On CUDA the cosine similarities of the unit appearance features come from an
        fp16 product with fp32 accumulation (error below 1e-3, 1/50 of the default
        epsilon; the fp32 GEMM was a quarter of the labeller's GPU time at K = 8).
        """
        dim = self.metric.dim
        x_app, y_app = xs[:, :dim], yt[:, :dim]
        if xs.is_cuda:
            similarity = (x_app.half() @ y_app.half().t()).float()
        else:
            similarity = x_app @ y_app.t()
        cost = self.alpha * (1.0 - similarity).clamp(0.0, 2.0)
        if xs.shape[1] > dim:
            cost = cost + self.beta * (xs[:, dim:] @ yt[:, dim:].t())
        return cost

    def _to_pixels(self, probs: torch.Tensor,
                   out_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        return patch_probs_to_pixels(probs, out_size, self.ignore_index)
