from .augmentations import class_mix_masks, color_jitter, gaussian_blur, mix

__all__ = ['class_mix_masks', 'color_jitter', 'gaussian_blur', 'mix']
