"""Range checks of :class:`SAOTLabeler`'s options, run when it is built."""
from typing import Sequence

from mmseg_saot.utils.errors import (ConfigError, check_integer, check_number,
                                     check_positive_int)
from .confidence import FILTER_MODES

# Options checked when the labeller is built (a bad value otherwise fails deep inside a
# solve, after the features of every image were computed): name -> bounds.
_POSITIVE_INTS = ('num_classes', 'feat_dim', 'num_neighbors', 'num_iters', 'metric_pairs',
                  'metric_patches', 'num_prototypes', 'knn_k')
_NON_NEGATIVE_INTS = ('metric_steps', 'metric_rank')
_NUMBER_BOUNDS = {
    'epsilon': dict(above=0.0), 'alpha': dict(at_least=0.0), 'beta': dict(at_least=0.0),
    'tol': dict(above=0.0), 'metric_lr': dict(above=0.0), 'knn_temperature': dict(above=0.0),
    'dense_max_entries': dict(at_least=0), 'dense_max_entries_gpu': dict(at_least=0),
    'confidence_threshold': dict(at_least=0.0),  # above 1 drops all: reported as all-ignore
    'confidence_quantile': dict(at_least=0.0, below=1.0),
    'coverage': dict(above=0.0, at_most=1.0),
}


def check_labeler_options(options: dict) -> None:
    """ConfigError naming the first option of ``SAOTLabeler`` out of its range.

    Args:
        options: the constructor's keyword arguments by name (its ``locals()``).
    """
    if options['confidence_mode'] not in FILTER_MODES:
        raise ConfigError(f'SAOTLabeler: confidence_mode must be one of {FILTER_MODES}, '
                          f'got {options["confidence_mode"]!r}.')
    for name in _POSITIVE_INTS:
        check_positive_int('SAOTLabeler', name, options[name])
    for name in _NON_NEGATIVE_INTS:
        check_integer('SAOTLabeler', name, options[name], minimum=0)
    for name, bounds in _NUMBER_BOUNDS.items():
        check_number('SAOTLabeler', name, options[name], **bounds)
    rho = options['rho']
    for value in (tuple(rho) if isinstance(rho, Sequence) else (rho,)):
        check_number('SAOTLabeler', 'rho', value, above=0.0)
    if isinstance(rho, Sequence) and len(rho) != 2:
        raise ConfigError(f'SAOTLabeler: rho must be a number or a pair (rho_src, rho_tgt), '
                          f'got {rho!r}.')
