from .pseudo_label_hook import SAOTPseudoLabelHook, find_pseudo_label_dataset

__all__ = ['SAOTPseudoLabelHook', 'find_pseudo_label_dataset']
