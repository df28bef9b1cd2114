"""SAOTPseudoLabelHook refuses a label space other than the decode head's, and bad options
when it is built."""
import re
from types import SimpleNamespace

import pytest
from torch import nn

from mmseg_saot.engine.hooks import SAOTPseudoLabelHook
from mmseg_saot.utils.errors import ConfigError, UserInputError


def test_num_classes_must_match_the_decode_head():
    hook = SAOTPseudoLabelHook(source=dict(type='GTA5Dataset'),
                               labeler=dict(type='SAOTLabeler'), num_classes=19)
    model = nn.Module()
    model.decode_head = SimpleNamespace(num_classes=21)
    with pytest.raises(UserInputError, match='num_classes=21'):
        hook.run(model, dataset=None)


def test_feature_index_must_name_a_map_of_the_backbone():
    # it ran until features.py indexed the backbone's tuple: IndexError
    hook = SAOTPseudoLabelHook(source=dict(type='GTA5Dataset'),
                               labeler=dict(type='SAOTLabeler'), feature_index=3)
    model = nn.Module()
    model.backbone = SimpleNamespace(out_indices=[11])
    with pytest.raises(UserInputError, match=re.escape(
            'SAOTPseudoLabelHook: feature_index=3, but the backbone returns 1 map(s) '
            '(model.backbone.out_indices); use an index in -1..0 (-1: the last block).')):
        hook.run(model, dataset=None)


@pytest.mark.parametrize('labeler, hook_options, message', [
    (dict(type='SAOTLabeler', epsilon=-1.0), {},
     'SAOTLabeler: epsilon must be a number > 0, got -1.0.'),
    (dict(type='SAOTLabeler', rho=(0.1, 0.0)), {},
     'SAOTLabeler: rho must be a number > 0, got 0.0.'),
    (dict(type='SAOTLabeler', epsilonn=0.1), {},
     "SAOTPseudoLabelHook: labeler.epsilonn: SAOTLabeler has no option 'epsilonn'. Did you "
     "mean 'epsilon'\\? It takes: method, num_classes, "),
    (dict(type='SAOTLabeler'), dict(batch_size=0),
     'SAOTPseudoLabelHook: batch_size must be an integer >= 1, got 0.'),
    (dict(type='SAOTLabeler'), dict(num_source_images=0),
     'SAOTPseudoLabelHook: num_source_images must be an integer >= 1, got 0.'),
    (dict(type='SAOTLabeler'), dict(source=dict(type='GTA5Dataset', data_prefx={})),
     "SAOTPseudoLabelHook: source.data_prefx: GTA5Dataset has no option 'data_prefx'. "
     "Did you mean 'data_prefix'\\? It takes: "),
    # pseudo-label PNGs are uint8: -1 was written as 255 and class 300 as 44, silently
    (dict(type='SAOTLabeler'), dict(ignore_index=-1),
     r'SAOTPseudoLabelHook: ignore_index=-1 does not fit the uint8 pseudo-label PNGs: '
     r'use an ignore_index in 0\.\.255 that is not a class \(255 as in MMSeg\)\.'),
    (dict(type='SAOTLabeler'), dict(ignore_index=3),
     r'SAOTPseudoLabelHook: ignore_index=3 is class 3 of num_classes=19'),
    (dict(type='SAOTLabeler'), dict(num_classes=300),
     r'SAOTPseudoLabelHook: num_classes=300 does not fit the uint8 pseudo-label PNGs '
     r'\(at most 255 classes, ids 0\.\.254, besides ignore_index\)\.'),
    (dict(type='SAOTLabeler'), dict(source=dict(type='GTA5Datset')),
     "SAOTPseudoLabelHook: source.type='GTA5Datset' is not a registered mmseg::dataset "
     "type .* Did you mean 'GTA5Dataset'\\?"),
])
def test_bad_options_stop_when_the_hook_is_built(labeler, hook_options, message):
    # built by the runner before any feature is computed; tools print ConfigError
    with pytest.raises(ConfigError, match=message):
        SAOTPseudoLabelHook(**{'source': dict(type='GTA5Dataset'), 'labeler': labeler,
                               **hook_options})


def test_a_misspelt_option_of_a_wrapped_source_set_is_named_when_it_is_built():
    # a wrapper's own options are checked at construction; the wrapped set's only
    # when it is built, before the labelling starts (MMEngine's call_hook would turn
    # the TypeError into one without a traceback to read)
    source = dict(type='RepeatDataset', times=2,
                  dataset=dict(type='GTA5Dataset', data_prefx={}))
    hook = SAOTPseudoLabelHook(source=source, labeler=dict(type='SAOTLabeler'))
    with pytest.raises(ConfigError, match="SAOTPseudoLabelHook: source.dataset.data_prefx: "
                                          "GTA5Dataset has no option 'data_prefx'"):
        hook.build_source()


def test_a_source_set_of_other_classes_than_the_target_is_refused(tmp_path):
    # MMSeg maps a set's labels to its own metainfo classes: a source with a subset in
    # another order gave the pseudo-labels the source's ids (road IoU 58.5 -> 1.9)
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from mmseg_saot.utils.errors import UserInputError
    (tmp_path / 'img').mkdir()
    (tmp_path / 'ann').mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img' / 'a.jpg')
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / 'ann' / 'a.png')
    source = dict(type='BaseSegDataset', data_root=str(tmp_path), pipeline=[],
                  data_prefix=dict(img_path='img', seg_map_path='ann'),
                  metainfo=dict(classes=('building', 'road', 'sky')))
    hook = SAOTPseudoLabelHook(source=source, labeler=dict(type='SAOTLabeler'),
                               num_classes=3)
    target = SimpleNamespace(metainfo=dict(classes=('road', 'building', 'sky')))
    with pytest.raises(UserInputError, match='its source set names other classes than the '
                       'target set \\(class 0 is "building" in the source and "road" in the '
                       'target\\)'):
        hook.build_source(target)
    same = SimpleNamespace(metainfo=dict(classes=('building', 'road', 'sky')))
    assert len(hook.build_source(same)) == 1


def test_a_labeler_without_type_is_an_saot_labeler():
    # a custom_hooks list written anew drops the base file's labeller type easily
    hook = SAOTPseudoLabelHook(source=dict(type='GTA5Dataset'),
                               labeler=dict(metric_steps=5, metric_rank=4))
    from mmseg_saot.engine.pseudo_labels.labelling import build_labeler
    labeler = build_labeler(hook.labeler_cfg, feat_dim=8, num_classes=19, ignore_index=255)
    assert type(labeler).__name__ == 'SAOTLabeler'


def test_the_hook_is_found_by_its_registered_class_not_its_exact_type_string():
    # tools/generate_pseudo_labels.py compared type == 'SAOTPseudoLabelHook': a scoped
    # name, the class itself or a subclass made it say the config had no such hook
    from mmseg.registry import HOOKS

    from mmseg_saot.engine.hooks import pseudo_label_hook_configs

    @HOOKS.register_module(force=True)
    class MyPseudoLabelHook(SAOTPseudoLabelHook):
        pass

    hooks = [dict(type='EMATeacherHook'), dict(type='mmseg.SAOTPseudoLabelHook', a=1),
             dict(type=SAOTPseudoLabelHook, a=2), dict(type='MyPseudoLabelHook', a=3),
             dict(type='SAOTPseudoLabelHook', a=4), dict(type='NoSuchHook')]
    try:
        assert [h['a'] for h in pseudo_label_hook_configs(hooks)] == [1, 2, 3, 4]
    finally:
        HOOKS._module_dict.pop('MyPseudoLabelHook')
    assert pseudo_label_hook_configs([]) == []
