"""Frozen backbone + student MLP head + EMA-teacher head, for two-stage UDA."""
import copy
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, SampleList, add_prefix
from torch import Tensor

from mmseg_saot.models.backbones.dinov2 import check_segmentor_parts
from mmseg_saot.models.data_preprocessors import UDADataPreProcessor
from mmseg_saot.utils.errors import ConfigError, UserInputError, check_number
from .frozen_features import FrozenFeaturesMixin
from .iteration_seeds import IterationSeedsMixin
from .self_training import (image_masks, labelled_samples, pad_to, stack_labels, strong_view,
                            teacher_labels, valid_pixels)

STAGES = ('pseudo_labels', 'self_training')
BRANCHES = ('teacher', 'student')


@MODELS.register_module()
class EMATeacherUDA(FrozenFeaturesMixin, IterationSeedsMixin, EncoderDecoder):
    """SAOT's decoder training: stage 1 on SAOT pseudo-labels, stage 2 EMA self-training.

    One frozen backbone is shared by the student head (``decode_head``, trained) and
    the teacher head (``teacher_head``, the student's exponential moving average,
    kept by :class:`~mmseg_saot.engine.hooks.EMATeacherHook`); a neck, which trains with
    the head, has its teacher copy too (``teacher_neck``). :meth:`loss` adds the
    named steps of the current stage, which
    :class:`~mmseg_saot.engine.hooks.UDAStageHook` sets from ``runner.iter``:

    * ``src.*``  (both stages, if ``source_weight > 0``): cross entropy on the labelled
      source branch;
    * ``tgt.*``  (stage ``'pseudo_labels'``): cross entropy on the target's SAOT
      pseudo-labels, each pixel weighted by its SAOT confidence;
    * ``mix.*``  (stage ``'self_training'``): the teacher labels the weak target view;
      the student learns them on a strong view (ClassMix with the source, colour
      jitter, blur), each pixel weighted by the teacher's confidence
      (:func:`~.self_training.teacher_labels`).

    A plain (single-branch) batch is a labelled set: its loss is ``sup.*``.
    Training state (the stage, the iteration that seeds the augmentations) comes from
    the hook at every iteration, never from the model's own counters, so a resumed run
    continues exactly.

    Args:
        backbone, decode_head, neck, train_cfg, test_cfg, data_preprocessor, init_cfg:
            as for ``EncoderDecoder``; use ``UDADataPreProcessor`` for source/target
            batches. A segmentor-level ``init_cfg`` leaves the backbone's frozen
            weights as they are (:meth:`init_weights`).
        auxiliary_head: must be None (refused: no stage computes its loss).
        source_weight: weight of the source loss (0 drops it; paper: 1).
        pseudo_label_weight: weight of the SAOT pseudo-label loss in stage 1.
        self_training_weight: weight of the teacher pseudo-label loss in stage 2.
        teacher_threshold: teacher confidence below which a pixel weighs 0.
        class_mix: paste source classes into the student's view (DACS ClassMix).
        jitter_strength, jitter_probability, blur_probability: strong-view colour
            jitter and blur (:mod:`.augmentations`).
        predict_on: ``'teacher'`` or ``'student'``: the head used by predict/test.
        feature_cache: keep backbone features of repeated inputs
            (:class:`FrozenFeatureCache`); a deterministic pipeline then runs the
            backbone once per image and view.
        feature_cache_gb: the cache's memory budget (GiB).
        feature_cache_dtype: its storage precision (``'fp16'``, ``'bf16'``, ``'fp32'``).
        feature_cache_dir: also keep the features on disk, in a subfolder named by
            a hash of the backbone's weights and config (runs of the same backbone
            share it; ``'{work_dir}'`` is filled in by tools/train.py).
        seed: seeds the strong views and the heads' dropout, with the iteration and the
            run's seed (:meth:`set_run_seed`): the views draw from ``(seed + 1000003 *
            run_seed) * 100003 + iter`` (plus the rank), the dropout from a SHA-256
            hash of it (``iteration_seeds.py``).
        pretrained: accepted for ``EncoderDecoder``'s interface (``mmseg.apis.init_model``
            sets it to None); anything else is an error: the backbone takes its
            weights from its own ``checkpoint`` option.
    """

    def __init__(self,
                 backbone: ConfigType,
                 decode_head: ConfigType,
                 neck: OptConfigType = None,
                 auxiliary_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 source_weight: float = 1.0,
                 pseudo_label_weight: float = 1.0,
                 self_training_weight: float = 1.0,
                 teacher_threshold: float = 0.5,
                 class_mix: bool = True,
                 jitter_strength: float = 0.2,
                 jitter_probability: float = 0.8,
                 blur_probability: float = 0.5,
                 predict_on: str = 'teacher',
                 feature_cache: bool = False,
                 feature_cache_gb: float = 8.0,
                 feature_cache_dtype: str = 'fp16',
                 feature_cache_dir: Optional[str] = None,
                 seed: int = 0,
                 pretrained: Optional[str] = None,
                 init_cfg: OptConfigType = None) -> None:
        if pretrained is not None:  # mmseg.apis.init_model passes None
            raise ConfigError(
                f'EMATeacherUDA: model.pretrained={pretrained!r} is not used; the frozen '
                'backbone loads its weights from model.backbone.checkpoint (a local file) '
                'or model.backbone.pretrained=True (timm hub). Remove model.pretrained.')
        if auxiliary_head is not None:
            raise ConfigError(
                'EMATeacherUDA: model.auxiliary_head is not supported: no stage computes its '
                'loss, so it would train on nothing. Remove model.auxiliary_head (or set '
                'it to None).')
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck,
                         auxiliary_head=auxiliary_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if predict_on not in BRANCHES:
            raise ConfigError(f'EMATeacherUDA: predict_on must be one of {BRANCHES}, '
                              f'got {predict_on!r}.')
        numbers = dict(source_weight=(source_weight, dict(at_least=0.0)),
                       pseudo_label_weight=(pseudo_label_weight, dict(at_least=0.0)),
                       self_training_weight=(self_training_weight, dict(at_least=0.0)),
                       teacher_threshold=(teacher_threshold, dict(at_least=0.0, below=1.0)),
                       jitter_strength=(jitter_strength, dict(at_least=0.0, at_most=1.0)),
                       jitter_probability=(jitter_probability, dict(at_least=0.0, at_most=1.0)),
                       blur_probability=(blur_probability, dict(at_least=0.0, at_most=1.0)),
                       feature_cache_gb=(feature_cache_gb, dict(above=0.0)))
        for name, (value, bounds) in numbers.items():
            check_number('EMATeacherUDA', name, value, **bounds)
        self._check_parts()
        check_segmentor_parts(self)  # the head's in_channels, the input grid
        self.teacher_head = MODELS.build(decode_head)
        self.teacher_head.requires_grad_(False)
        # a neck may train: the teacher keeps its own average of it (EMATeacherHook)
        self.teacher_neck = MODELS.build(neck) if neck is not None else None
        if self.teacher_neck is not None:
            self.teacher_neck.requires_grad_(False)
        self.source_weight = source_weight
        self.pseudo_label_weight = pseudo_label_weight
        self.self_training_weight = self_training_weight
        self.teacher_threshold = teacher_threshold
        self.class_mix = class_mix
        self.jitter_strength = jitter_strength
        self.jitter_probability = jitter_probability
        self.blur_probability = blur_probability
        self.predict_on = predict_on
        self.seed = seed
        self._setup_frozen_features(backbone, feature_cache, feature_cache_gb,
                                    feature_cache_dtype, feature_cache_dir, 'EMATeacherUDA')
        self.stage, self.iteration = STAGES[0], None
        self.run_seed, self.rank = 0, 0

    def _check_parts(self) -> None:
        """ConfigError for a head that ignores per-pixel weights (the SAOT confidences
        and ``teacher_threshold`` would change nothing)."""
        head = type(self.decode_head).__name__
        if not getattr(self.decode_head, 'weighs_pixels', False):
            raise ConfigError(
                f'EMATeacherUDA: model.decode_head {head} does not weigh pixels (it ignores '
                'gt_pixel_weight), so the SAOT confidences and teacher_threshold would change '
                "nothing; use type='MLPHead' (configs/_base_/models/dinov2_mlp.py), or a head "
                'that reads gt_pixel_weight and sets weighs_pixels = True.')

    def check_training_parts(self) -> None:
        """ConfigError unless the data preprocessor can read a source/target batch
        (testing, TTA included, may use a plain one). ``tools/train.py`` calls it before
        the target set is pseudo-labelled; under DDP, MMEngine's wrapper calls the
        preprocessor itself and :meth:`train_step` never sees a batch it cannot read."""
        if not isinstance(self.data_preprocessor, UDADataPreProcessor):
            raise ConfigError(
                'EMATeacherUDA: training needs model.data_preprocessor to be a '
                "UDADataPreProcessor (type='UDADataPreProcessor', with the same options), "
                'which preprocesses the source and target branches of a batch; got '
                f'{type(self.data_preprocessor).__name__} (a KeyError: 0 inside it).')

    def train_step(self, data, optim_wrapper):
        """``EncoderDecoder.train_step``, after :meth:`check_training_parts`."""
        self.check_training_parts()
        return super().train_step(data, optim_wrapper)

    #: :func:`~mmseg_saot.models.backbones.dinov2.check_segmentor_parts`: a segmentor-level
    #: ``init_cfg`` is fine here (:meth:`init_weights` restores the frozen backbone)
    keeps_frozen_backbone_on_init = True

    def init_weights(self) -> None:
        """Initialise as ``EncoderDecoder`` does, except the backbone's frozen weights:
        mmengine applies a segmentor-level ``init_cfg`` (e.g. ``Normal`` on every
        ``Linear``) to every submodule, the loaded ViT included."""
        if not self.init_cfg:
            return super().init_weights()
        frozen = [t for t in self.backbone.parameters() if not t.requires_grad]
        frozen += list(self.backbone.buffers())
        saved = [t.detach().clone() for t in frozen]
        super().init_weights()
        with torch.no_grad():
            for tensor, value in zip(frozen, saved):
                tensor.copy_(value)

    # training state, set by UDAStageHook before every iteration
    def set_train_state(self, stage: str, iteration: int) -> None:
        """Select the loss steps of ``stage`` and seed the views of ``iteration``."""
        if stage not in STAGES:
            raise ValueError(f'EMATeacherUDA: stage must be one of {STAGES}, got {stage!r}.')
        self.stage, self.iteration = stage, iteration

    def train(self, mode: bool = True) -> 'EMATeacherUDA':
        """The teacher (head and neck) always predicts in eval mode (BN statistics, no
        dropout)."""
        super().train(mode)
        self.teacher_head.eval()
        if self.teacher_neck is not None:
            self.teacher_neck.eval()
        return self

    # features
    def extract_feat(self, inputs: Tensor, branch: str = 'student') -> List[Tensor]:
        """Backbone features (through the feature cache when enabled), then the neck of
        ``branch``: the trained one for ``'student'``, its average for ``'teacher'``."""
        feats = self._backbone_feat(inputs)
        if not self.with_neck:
            return feats
        return (self.teacher_neck if branch == 'teacher' else self.neck)(feats)

    @torch.no_grad()
    def val_step_branches(self, data: dict, branches: Sequence[str]) -> Dict[str, SampleList]:
        """Predictions of several heads on one batch, one backbone pass per image or crop.

        Args:
            data: a dataloader batch, as for ``val_step``.
            branches: heads to predict with, from ``('teacher', 'student')``.

        Returns:
            ``{branch: data samples with pred_sem_seg}``, each branch on its own copy of
            the batch's data samples.
        """
        unknown = [b for b in branches if b not in BRANCHES]
        if unknown:
            raise ValueError(f'EMATeacherUDA.val_step_branches: branches must be in '
                             f'{BRANCHES}, got {tuple(branches)}.')
        data = self.data_preprocessor(data, False)
        default, outputs = self.predict_on, {}
        with self._features_shared():
            try:
                for branch in branches:
                    self.predict_on = branch
                    outputs[branch] = self.predict(data['inputs'],
                                                   copy.deepcopy(data['data_samples']))
            finally:
                self.predict_on = default
        return outputs

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Logits of the ``predict_on`` head at input resolution.

        An input that is not whole patches (a sliding-window crop of an image smaller
        than the window) is padded by the backbone on the right and bottom; its logits
        are upsampled to the padded size and cut back, so that each pixel keeps the
        prediction of its own patch instead of a map stretched over the padding.
        """
        head = self.teacher_head if self.predict_on == 'teacher' else self.decode_head
        feats = self.extract_feat(inputs, self.predict_on)
        height, width = inputs.shape[-2:]
        padded_size = getattr(self.backbone, 'padded_size', None)  # DINOv2Backbone's
        padded = (height, width) if padded_size is None else padded_size((height, width))
        if padded == (height, width):
            return head.predict(feats, batch_img_metas, self.test_cfg)
        metas = [dict(meta, img_shape=torch.Size(padded)) for meta in batch_img_metas]
        return head.predict(feats, metas, self.test_cfg)[..., :height, :width]

    # loss steps
    def loss(self, inputs, data_samples) -> Dict[str, Tensor]:
        """The current stage's losses; see the class docstring for the steps.

        With the feature cache on, ``feature_cache_hits`` (logged, not a loss) is the
        share of this step's backbone inputs whose features came from the cache.
        """
        with self._iteration_rng():
            return self._with_cache_hits(lambda: self._stage_losses(inputs, data_samples))

    def _stage_losses(self, inputs, data_samples) -> Dict[str, Tensor]:
        if not isinstance(inputs, dict):
            return self.supervised_loss(inputs, data_samples, 'sup', 1.0)
        losses: Dict[str, Tensor] = {}
        if self.source_weight > 0 and 'source' in inputs:
            losses.update(self.supervised_loss(inputs['source'], data_samples['source'],
                                               'src', self.source_weight))
        if 'target' in inputs and self.stage == 'pseudo_labels':
            losses.update(self.supervised_loss(inputs['target'], data_samples['target'],
                                               'tgt', self.pseudo_label_weight))
        elif 'target' in inputs:
            losses.update(self.self_training_loss(inputs, data_samples))
        if not losses:
            raise UserInputError('EMATeacherUDA: the batch gave no loss: its branches are '
                                 f'{sorted(inputs)}; the UDA steps need "source" and/or '
                                 '"target" (SourceTargetDataset).')
        return losses

    def supervised_loss(self, images: Tensor, samples: SampleList, prefix: str,
                        weight: float) -> Dict[str, Tensor]:
        """Student cross entropy on the samples' labels (and pixel weights)."""
        losses = self.decode_head.loss(self.extract_feat(images), samples, self.train_cfg)
        return add_prefix(self._scaled(losses, weight), prefix)

    def self_training_loss(self, inputs: Dict[str, Tensor],
                           data_samples: Dict[str, SampleList]) -> Dict[str, Tensor]:
        """Teacher labels on the weak target view, student loss on the strong view."""
        if self.iteration is None:
            raise UserInputError('EMATeacherUDA: stage "self_training" needs the iteration '
                                 'from UDAStageHook; add dict(type="UDAStageHook", ...) to '
                                 'custom_hooks (see configs/_base_/uda/ema_self_training.py).')
        target, target_samples = inputs['target'], data_samples['target']
        labels, weights = self.teacher_pseudo_labels(target, target_samples)
        ignore = self.decode_head.ignore_index
        # diagnostic: share of the target's pixels the teacher is confident about
        confident = (weights > 0).sum() / (labels != ignore).sum().clamp(min=1)
        source = source_labels = None
        if self.class_mix:
            if 'source' not in inputs or len(inputs['source']) != len(target):
                raise UserInputError(
                    'EMATeacherUDA: ClassMix pairs each target image with a source image; '
                    'train on SourceTargetDataset (or set model.class_mix=False).')
            # one canvas for both branches, padded as the preprocessor pads
            size = tuple(max(a, b) for a, b in zip(inputs['source'].shape[-2:],
                                                   target.shape[-2:]))
            pad_val = float(getattr(self.data_preprocessor, 'pad_val', 0.0))  # as it pads
            source = pad_to(inputs['source'], size, pad_val)
            source_labels = stack_labels(data_samples['source'], size, ignore).to(target.device)
            target, labels = pad_to(target, size, pad_val), pad_to(labels, size, ignore)
            weights = pad_to(weights, size, 0.0)
        generator = torch.Generator().manual_seed(self._iteration_seed(self.iteration,
                                                                       self.rank))
        mean, std = self._pixel_statistics()
        images, labels, weights = strong_view(
            source, source_labels, target, labels, weights, mean=mean, std=std,
            generator=generator, class_mix=self.class_mix,
            jitter_strength=self.jitter_strength,
            jitter_probability=self.jitter_probability,
            blur_probability=self.blur_probability, ignore_index=ignore,
            valid=image_masks(target_samples, tuple(target.shape[-2:]), target.device))
        samples = labelled_samples(target_samples, labels, weights)
        feats = super().extract_feat(images)  # strong views never repeat: no cache
        losses = self._scaled(self.decode_head.loss(feats, samples, self.train_cfg),
                              self.self_training_weight)
        losses['teacher_confident'] = confident.float()
        return add_prefix(losses, 'mix')

    @torch.no_grad()
    def teacher_pseudo_labels(self, images: Tensor, samples: SampleList):
        """Teacher labels ``(B, H, W)`` and weights ``(B, H, W)`` of the weak view."""
        logits = self.teacher_head(self.extract_feat(images, 'teacher'))
        logits = F.interpolate(logits, size=images.shape[-2:], mode='bilinear',
                               align_corners=self.align_corners)
        valid = valid_pixels(samples, images.shape[-2:], images.device)
        return teacher_labels(logits, valid, threshold=self.teacher_threshold,
                              ignore_index=self.decode_head.ignore_index)

    def _pixel_statistics(self):
        preprocessor = self.data_preprocessor
        if not getattr(preprocessor, '_enable_normalize', False):
            return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        return (preprocessor.mean.flatten().tolist(), preprocessor.std.flatten().tolist())

    @staticmethod
    def _scaled(losses: Dict[str, Tensor], weight: float) -> Dict[str, Tensor]:
        return {name: value * weight if name.startswith('loss') else value
                for name, value in losses.items()}
