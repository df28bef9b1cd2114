"""config_types: a config's type as a registered name, scoped or not, or a class."""
import pytest

from mmseg_saot.utils.config_types import has_type, type_name


class LoadThings:
    pass


@pytest.mark.parametrize('config_type, name', [
    ('LoadThings', 'LoadThings'), ('mmseg.LoadThings', 'LoadThings'),
    (LoadThings, 'LoadThings'), (3, '3')])
def test_type_name_drops_the_scope_and_reads_classes(config_type, name):
    assert type_name(config_type) == name


def test_has_type_matches_scoped_names_and_classes_both_ways():
    assert has_type(dict(type='mmseg.LoadThings'), 'LoadThings')
    assert has_type(dict(type=LoadThings), 'LoadThings')
    assert has_type(dict(type='LoadThings'), LoadThings)
    assert has_type(dict(type='mmseg.LoadThings'), 'mmseg.LoadThings')
    assert not has_type(dict(type='LoadOther'), 'LoadThings')
    assert not has_type(dict(kind='LoadThings'), 'LoadThings')
    assert not has_type('LoadThings', 'LoadThings')
