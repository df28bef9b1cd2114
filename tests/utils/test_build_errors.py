"""explain_build_error: misspelt options and types of registry-built components."""
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

import mmseg_saot  # noqa: F401  registers MLPHead
from mmseg_saot.utils.build_errors import (component_config_problem, explain_build_error,
                                           find_config_entry)

HEAD = dict(type='MLPHead', in_channels=[8], in_index=[0], channels=4, num_classes=3)


def build_error(registry, cfg):
    init_default_scope('mmseg')
    with pytest.raises((TypeError, KeyError)) as caught:
        registry.build(cfg)
    return caught.value


def test_an_unknown_option_is_named_with_its_config_entry_and_closest_match():
    head = dict(HEAD, num_clases=5)
    cfg = Config(dict(model=dict(decode_head=head)))
    message = explain_build_error(build_error(MODELS, head), cfg, 'run.py')
    assert message.startswith("run.py: model.decode_head.num_clases: MLPHead has no option "
                              "'num_clases' (from the config or --cfg-options). Did you mean "
                              "'num_classes'? It takes: in_channels, channels, num_classes,")


def test_an_option_passed_on_to_a_base_class_lists_the_base_class_options():
    dataset = dict(type='CityscapesDataset', data_roott='x', lazy_init=True)
    message = explain_build_error(build_error(DATASETS, dataset), None)
    assert "CityscapesDataset has no option 'data_roott'" in message
    assert "Did you mean 'data_root'?" in message and 'img_suffix' in message


def test_an_unknown_type_is_named_with_the_closest_registered_one():
    head = dict(HEAD, type='MLPHeadd')
    message = explain_build_error(build_error(MODELS, head),
                                  Config(dict(model=dict(decode_head=head))))
    assert ("the config: model.decode_head.type='MLPHeadd' is not a registered "
            "mmseg::model type") in message
    assert "Did you mean 'MLPHead'?" in message


def test_a_missing_option_is_named():
    head = dict(type='MLPHead', in_index=[0], channels=4, num_classes=3)
    message = explain_build_error(build_error(MODELS, head), None)
    assert 'MLPHead needs in_channels' in message


def test_a_missing_option_names_the_entry_that_lacks_it():
    # the first entry of that type was named (parts.0), though it had the option
    complete, lacking = HEAD, dict(type='MLPHead', in_index=[0], channels=4, num_classes=3)
    cfg = Config(dict(model=dict(parts=[complete, lacking])))
    message = explain_build_error(build_error(MODELS, lacking), cfg, 'run.py')
    assert message.startswith('run.py: model.parts.1: MLPHead needs in_channels; set it in '
                              'the config or with --cfg-options model.parts.1.in_channels=...')


@MODELS.register_module()
class BrokenInside:
    """A component whose constructor has a bug of its own (not a config mistake)."""

    def __init__(self, size: int = 1):
        dict(**{'size': size}).update(1, 2)  # TypeError from inside __init__


def test_errors_from_inside_a_constructor_are_not_explained_away():
    err = build_error(MODELS, dict(type='BrokenInside'))
    assert explain_build_error(err, None) is None
    assert explain_build_error(ValueError('x'), None) is None


def test_find_config_entry_walks_dicts_and_lists():
    cfg = dict(custom_hooks=[dict(type='A'), dict(type='B', momentum=1)])
    assert find_config_entry(cfg, 'B', ['momentum']) == 'custom_hooks.1'
    assert find_config_entry(cfg, 'B', ['nope']) is None


def test_find_config_entry_reads_scoped_and_class_types():
    # a scoped type (mmseg.MLPHead) or a class was not found: the message named no entry
    cfg = dict(model=dict(decode_head=dict(type='mmseg.MLPHead', channels=8)),
               custom_hooks=[dict(type=LookupError, momentum=1)])
    assert find_config_entry(cfg, 'MLPHead', ['channels']) == 'model.decode_head'
    assert find_config_entry(cfg, 'LookupError', ['momentum']) == 'custom_hooks.0'


def test_component_config_problem_checks_options_as_far_as_the_signature_tells():
    from mmengine.registry import Registry
    registry = Registry('thing', scope='demo')

    @registry.register_module()
    class Closed:
        def __init__(self, size: int = 1):
            self.size = size

    @registry.register_module()
    class Child(Closed):
        def __init__(self, depth: int = 1, **kwargs):  # the rest goes to Closed
            super().__init__(**kwargs)

    @registry.register_module()
    class Open:
        def __init__(self, **kwargs):  # takes anything: not checked
            self.kwargs = kwargs

    assert component_config_problem(dict(type='Open', anything=1), registry, 'x') is None
    assert component_config_problem(dict(type='Child', depth=2, size=2), registry, 'x') is None
    assert component_config_problem(dict(type='Child', sise=2), registry, 'x') == (
        "x.sise: Child has no option 'sise'. Did you mean 'size'? It takes: depth, size.")
    assert component_config_problem(dict(type='Open', anything=1), registry, 'x',
                                    drops_kwargs=(Open,)) == (
        "x.anything: Open has no option 'anything'. It takes no options.")
    assert component_config_problem(dict(type='Closed', size=2), registry, 'x') is None
    assert component_config_problem(dict(type='Closed', sise=2), registry, 'x') == (
        "x.sise: Closed has no option 'sise'. Did you mean 'size'? It takes: size.")
    assert component_config_problem(dict(type=Closed, sise=2), registry, 'x').startswith(
        "x.sise: Closed has no option 'sise'")
    assert component_config_problem(dict(type='Opn'), registry, 'x') == (
        "x.type='Opn' is not a registered demo::thing type (check the spelling, or add "
        "the module that registers it to custom_imports). Did you mean 'Open'?")
    assert component_config_problem(dict(size=2), registry, 'x') == (
        "x needs a type (dict(type=..., ...)), got {'size': 2}.")


def test_takes_option_reads_the_registered_signature():
    from mmseg.registry import METRICS

    from mmseg_saot.utils.build_errors import takes_option
    assert takes_option(dict(type='CityscapesMetric'), METRICS, 'keep_results')
    assert not takes_option(dict(type='IoUMetric'), METRICS, 'keep_results')  # swallowed
    assert not takes_option(dict(type='NoSuchMetric'), METRICS, 'keep_results')
