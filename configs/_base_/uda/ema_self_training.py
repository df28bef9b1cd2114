# SAOT's decoder (paper Sec. 3.4): an MLP head trained on the SAOT
# pseudo-labels (stage 1), then refined by EMA-teacher self-training (stage 2),
# after DAFormer; the configs draw target images by class-balanced sampling in
# both stages. Experiments put these
# pieces into `model` and `custom_hooks` (bases cannot share keys).
_base_ = ['../models/dinov2_mlp.py']

model = dict(
    type='EMATeacherUDA',  # student head + EMA teacher head on one frozen ViT
    data_preprocessor=dict(type='UDADataPreProcessor'),  # source/target batches
    source_weight=1.0,  # supervised GTA5 loss, both stages (DAFormer: 1)
    pseudo_label_weight=1.0,  # stage 1: SAOT pseudo-labels x confidence
    self_training_weight=1.0,  # stage 2: teacher labels x teacher confidence
    teacher_threshold=0.5,  # teacher confidence under which a pixel weighs 0
    class_mix=True,  # DACS ClassMix: half the source classes pasted on target
    jitter_strength=0.2,  # strong view: brightness/contrast/saturation +-20 %
    jitter_probability=0.8,
    blur_probability=0.5,  # strong view: Gaussian blur, sigma in [0.15, 1.15]
    predict_on='teacher',  # the head evaluated and tested
    feature_cache=False,  # True: frozen features reused across epochs (fp16)
    feature_cache_gb=8.0,
    feature_cache_dtype='fp16')
ema_teacher_hook = dict(
    type='EMATeacherHook',
    momentum=0.001,  # 1 - alpha, DAFormer's teacher alpha = 0.999
    ramp=True)  # alpha_t = min(1 - 1/(t+1), alpha): early teachers track fast
class_balanced_sampler = dict(
    _delete_=True,  # replaces the base InfiniteSampler
    type='ClassBalancedSampler',  # rare-class sampling of target images
    temperature=0.01,  # T of P(c) ~ exp((1 - f_c) / T) (DAFormer RCS: 0.01)
    min_pixels=3000)  # pixels of c for an image to count as containing c
# the head evaluated both ways: teacher/mIoU, student/mIoU, per-class JSON
val_loop = dict(type='TeacherStudentValLoop')
class_iou_evaluator = dict(type='ClassIoUMetric', iou_metrics=['mIoU'])
