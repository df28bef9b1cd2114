from .ema_teacher_hook import EMATeacherHook, ema_update
from .interrupt_hook import SaveOnInterruptHook, TrainingInterrupted
from .pseudo_label_hook import (SAOTPseudoLabelHook, find_pseudo_label_dataset,
                                pseudo_label_hook_configs)
from .uda_stage_hook import UDAStageHook

__all__ = ['EMATeacherHook', 'ema_update', 'SAOTPseudoLabelHook',
           'find_pseudo_label_dataset', 'pseudo_label_hook_configs', 'UDAStageHook',
           'SaveOnInterruptHook', 'TrainingInterrupted']
