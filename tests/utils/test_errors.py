import math

import pytest

from mmseg_saot.utils.errors import (ConfigError, check_number, check_positive_int,
                                     integer_problem, number_problem)


@pytest.mark.parametrize('value', [0, -3, True, 2.0, '4', None])
def test_integer_problem_names_the_key_the_rule_and_the_value(value):
    assert integer_problem('train_cfg.max_iters', value, minimum=1) == \
        f'train_cfg.max_iters must be an integer >= 1, got {value!r}'


def test_integer_problem_accepts_integers_from_the_minimum():
    assert integer_problem('num_workers', 0, minimum=0) is None
    assert integer_problem('num_workers', 7, minimum=0) is None


@pytest.mark.parametrize('value, bounds, rule', [
    (0.0, dict(above=0), '> 0'),
    (math.nan, dict(at_least=0), '>= 0'),
    (True, dict(at_least=0), '>= 0'),
    ('1e-3', dict(above=0), '> 0'),
    (1.0, dict(above=0, below=1), '> 0 and < 1'),
])
def test_number_problem_states_every_bound(value, bounds, rule):
    assert number_problem('lr', value, **bounds) == f'lr must be a number {rule}, got {value!r}'


def test_number_problem_accepts_inf_without_an_upper_bound():
    assert number_problem('rho', math.inf, above=0) is None
    assert number_problem('rho', math.inf, above=0, below=10) is not None


def test_checks_raise_config_errors_that_name_the_component():
    with pytest.raises(ConfigError, match=r'^MLPHead: num_layers must be an integer >= 1, '
                                          r'got 0\.$'):
        check_positive_int('MLPHead', 'num_layers', 0)
    with pytest.raises(ConfigError, match=r'^SAOTLabeler: epsilon must be a number > 0, '
                                          r'got -1\.$'):
        check_number('SAOTLabeler', 'epsilon', -1, above=0)
    assert check_positive_int('MLPHead', 'num_layers', 2) == 2
    assert check_number('SAOTLabeler', 'epsilon', 0.05, above=0) == 0.05


def test_upper_bounds_and_integer_minimums():
    assert number_problem('m', 1.0, above=0, at_most=1) is None
    assert number_problem('m', 1.5, above=0, at_most=1) == \
        'm must be a number > 0 and <= 1, got 1.5'
    from mmseg_saot.utils.errors import check_integer
    assert check_integer('Hook', 'begin', 0, minimum=0) == 0
    with pytest.raises(ConfigError, match=r"^Hook: begin must be an integer >= 0, got '3'\.$"):
        check_integer('Hook', 'begin', '3', minimum=0)


def test_load_failure_reason_keeps_the_cause_and_drops_the_advice():
    from mmseg_saot.utils.errors import load_failure_reason
    torn = RuntimeError('PytorchStreamReader failed reading zip archive: failed finding '
                        'central directory (this is a common error that can occur when '
                        'your checkpoint file is corrupted)')
    assert load_failure_reason(torn) == ('PytorchStreamReader failed reading zip archive: '
                                         'failed finding central directory')
    pickled = RuntimeError('Weights only load failed. Please file an issue.\n'
                           'WeightsUnpickler error: Unsupported global: GLOBAL x.Y was not '
                           'an allowed global by default.')
    assert load_failure_reason(pickled) == 'Unsupported global: GLOBAL x.Y'
    assert load_failure_reason(EOFError()) == 'EOFError'
    long = load_failure_reason(ValueError('word ' * 100), limit=30)
    assert long == 'word word word word word word ...' and len(long) <= 34


def test_error_reason_is_the_type_and_the_first_line():
    from mmseg_saot.utils.errors import error_reason
    assert error_reason(OSError('truncated\nmore detail')) == 'OSError: truncated'
    assert error_reason(KeyError()) == 'KeyError'
