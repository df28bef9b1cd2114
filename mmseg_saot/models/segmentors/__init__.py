from .augmentations import class_mix_masks, color_jitter, gaussian_blur, mix
from .ema_teacher_uda import EMATeacherUDA
from .feature_cache import FrozenFeatureCache

__all__ = ['class_mix_masks', 'color_jitter', 'gaussian_blur', 'mix', 'EMATeacherUDA',
           'FrozenFeatureCache']
