from .class_balanced_sampler import ClassBalancedSampler, class_probabilities

__all__ = ['ClassBalancedSampler', 'class_probabilities']
