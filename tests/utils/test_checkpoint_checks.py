"""Checkpoints checked before the runner loads them."""
import datetime

import pytest
import torch

from mmseg_saot.models.backbones import DINOv2Backbone
from mmseg_saot.utils.checkpoint_checks import (check_checkpoint_fits_or_exit,
                                                check_checkpoint_or_exit, load_from_warning)


def _exit_message(path, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_checkpoint_of_tensors_passes(tmp_path, capsys):
    path = tmp_path / 'iter_1.pth'
    torch.save({'meta': {'iter': 1}, 'state_dict': {'w': torch.ones(2)}}, path)
    check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert capsys.readouterr().err == ''


def test_a_legacy_format_checkpoint_passes(tmp_path, capsys):
    # not a zip file, so it cannot be memory-mapped: loaded in full instead
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, path, _use_new_zipfile_serialization=False)
    check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert capsys.readouterr().err == ''


def test_the_check_maps_zip_checkpoints_instead_of_reading_them(tmp_path, monkeypatch):
    path = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    assert calls == [dict(map_location='cpu', weights_only=True, mmap=True)]


def test_a_remote_checkpoint_says_to_download_it(capsys):
    # it said "does not exist", which reads as a typo in the path
    url = 'https://example.org/work_dirs/iter_4000.pth'
    assert _exit_message(url, capsys) == (
        f'error: CHECKPOINT: "{url}" is a remote address; checkpoints are read from local '
        'files here (they are checked before the run). Download it and give its local '
        'path.\n')


def test_missing_truncated_and_garbage_files_name_the_option(tmp_path, capsys):
    assert _exit_message(tmp_path / 'nope.pth', capsys) == \
        f'error: CHECKPOINT: checkpoint "{tmp_path / "nope.pth"}" does not exist.\n'
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.ones(64)}}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('not a checkpoint')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    text = tmp_path / 'hi.pth'
    text.write_text('hi\n')  # opcodes with bad arguments: a KeyError in the unpickler
    for path in (truncated, garbage, empty, text):
        message = _exit_message(path, capsys)
        assert message.startswith(f'error: CHECKPOINT: "{path}" is not a readable checkpoint (')
        assert 'tools/train.py' in message
        assert 'set to `False`' not in message  # never torch's advice to drop weights_only


def test_foreign_objects_are_refused_and_weights_only_stays_on(tmp_path, capsys):
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {}, 'when': datetime.date(2020, 1, 1)}, path)
    message = _exit_message(path, capsys)
    assert '(Unsupported global: GLOBAL datetime.date)' in message
    with pytest.raises(Exception):
        torch.load(path)  # the check allow-listed nothing


class _Head(torch.nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv_seg = torch.nn.Conv2d(4, classes, 1)
        self.bn = torch.nn.BatchNorm2d(4)


class _Wrapper(torch.nn.Module):  # DDP / TTA-model style: the model as .module
    def __init__(self, module):
        super().__init__()
        self.module = module


def _fits(model, path) -> None:
    checkpoint = check_checkpoint_or_exit(str(path), 'CHECKPOINT')
    check_checkpoint_fits_or_exit(model, checkpoint, str(path), 'cfg.py')


def _fit_message(model, path, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _fits(model, path)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_checkpoint_of_the_model_fits_through_wrappers_and_prefixes(tmp_path, capsys):
    head = _Head()
    path = tmp_path / 'iter_1.pth'
    torch.save({'meta': {}, 'state_dict': head.state_dict()}, path)
    _fits(_Wrapper(_Wrapper(_Head())), path)
    prefixed = tmp_path / 'ddp.pth'  # saved from a DDP-wrapped model, extra key
    state = {f'module.{k}': v for k, v in head.state_dict().items()}
    torch.save(dict(state, extra=torch.ones(1)), prefixed)  # no 'state_dict' wrapper
    _fits(_Head(), prefixed)
    assert capsys.readouterr().err == ''


def test_frozen_parameters_may_be_absent_but_not_misshapen(tmp_path, capsys):
    model = _Head()
    model.conv_seg.requires_grad_(False)  # e.g. a frozen backbone saved in the state dict
    path = tmp_path / 'head_only.pth'
    torch.save({'state_dict': {k: v for k, v in model.state_dict().items()
                               if not k.startswith('conv_seg.')}}, path)
    _fits(model, path)
    assert capsys.readouterr().err == ''
    path = tmp_path / 'other_frozen.pth'
    torch.save({'state_dict': _Head(classes=5).state_dict()}, path)
    assert '2 weights have another shape' in _fit_message(model, path, capsys)


def test_missing_weights_are_named(tmp_path, capsys):
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.w': torch.ones(2)}}, path)
    message = _fit_message(_Head(), path, capsys)
    assert message.startswith(f'error: CHECKPOINT: "{path}" does not fit the model of cfg.py: '
                              "7 of the model's 7 weights are missing (conv_seg.weight, "
                              'conv_seg.bias, bn.weight, ... (4 more)).')
    assert 'tools/train.py' in message


def test_other_shapes_are_named(tmp_path, capsys):
    path = tmp_path / 'five_classes.pth'
    torch.save({'state_dict': _Head(classes=5).state_dict()}, path)
    message = _fit_message(_Head(classes=3), path, capsys)
    assert ('2 weights have another shape (conv_seg.weight ((5, 4, 1, 1) in the checkpoint, '
            '(3, 4, 1, 1) in the model), conv_seg.bias ((5,) in the checkpoint, (3,) in the '
            'model))') in message
    assert 'missing' not in message


def test_a_checkpoint_folder_is_named_as_one(tmp_path, capsys):
    assert f'error: CHECKPOINT: "{tmp_path}" is a folder; give the checkpoint file in it (e.g. ' \
        f'{tmp_path}/iter_<N>.pth).' in _exit_message(tmp_path, capsys)


def test_a_head_trained_on_other_frozen_backbone_weights_is_refused(tmp_path, capsys):
    def model(seed):
        torch.manual_seed(seed)  # random ViT weights: another seed, other weights
        built = _Head()
        built.backbone = DINOv2Backbone(model_name='vit_small_patch14_dinov2', out_indices=1)
        return built
    trained, tested = model(0), model(1)
    path = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': trained.state_dict()}, path)
    message = _fit_message(tested, path, capsys)
    assert message.startswith(f'error: CHECKPOINT: "{path}" was trained with other frozen ViT '
                              'weights than cfg.py (with its --cfg-options) gives (their '
                              'sha256 differs)')
    _fits(model(0), path)  # the same weights
    older = tmp_path / 'older.pth'  # written before the digest was saved: not compared
    torch.save({'state_dict': {k: v for k, v in trained.state_dict().items()
                               if not k.endswith('frozen_vit_sha256')}}, older)
    _fits(tested, older)
    assert capsys.readouterr().err == ''
    # weights of other shapes too (another ViT and head width): the shapes are named,
    # not "other frozen weights" with advice to point at them
    wider = model(0)
    wider.conv_seg = torch.nn.Conv2d(4, 5, 1)
    torch.save({'state_dict': wider.state_dict()}, path)
    message = _fit_message(tested, path, capsys)
    assert message.startswith(f'error: CHECKPOINT: "{path}" does not fit the model of cfg.py')
    assert 'conv_seg.weight ((5, 4, 1, 1) in the checkpoint, (3, 4, 1, 1) in the model)' \
        in message


def test_load_from_says_which_weights_fine_tuning_leaves_at_their_initial_values():
    three = _Head(classes=3)
    assert load_from_warning(_Wrapper(_Head(classes=3)), {'state_dict': three.state_dict()},
                             'a.pth') is None
    message = load_from_warning(_Head(classes=5), {'state_dict': three.state_dict()}, 'a.pth')
    assert message == (
        'load_from: "a.pth" does not fit this model exactly: 2 weights have another shape '
        '(conv_seg.weight ((3, 4, 1, 1) in the checkpoint, (5, 4, 1, 1) in the model), '
        'conv_seg.bias ((3,) in the checkpoint, (5,) in the model)). Those weights start '
        'from their initial values; if you meant to continue this model\'s training, use '
        'its own checkpoint (or --resume).')


def test_load_from_says_when_the_head_was_trained_on_another_backbone():
    def model(seed):
        torch.manual_seed(seed)
        built = _Head()
        built.backbone = DINOv2Backbone(model_name='vit_small_patch14_dinov2', out_indices=1)
        return built
    message = load_from_warning(model(1), {'state_dict': model(0).state_dict()}, 'a.pth')
    assert message.startswith('load_from: "a.pth" does not fit this model exactly: its head '
                              'was trained on the features of other frozen backbone weights')


def test_a_teacher_never_trained_is_named_when_the_config_predicts_with_it():
    from mmseg_saot.utils.checkpoint_checks import untrained_teacher_problem

    class Segmentor(_Head):
        predict_on = 'teacher'
    source_only = "custom_hooks = []\nmodel = dict(predict_on='student')\n"
    uda = "custom_hooks = [dict(type='EMATeacherHook', momentum=0.01)]\n"

    def problem(model, cfg_text):
        checkpoint = {'state_dict': {}, 'meta': {'cfg': cfg_text}}
        return untrained_teacher_problem(_Wrapper(model), checkpoint, 'a.pth', 'demo.py')
    assert problem(Segmentor(), source_only).startswith(
        '"a.pth" was saved by a run without EMATeacherHook (its saved config has none in '
        'custom_hooks), so its teacher head was never trained, and demo.py predicts with the '
        "teacher (model.predict_on='teacher'). Test the head that run trained with "
        '--cfg-options model.predict_on=student')
    assert problem(Segmentor(), uda) is None
    student = Segmentor()
    student.predict_on = 'student'
    assert problem(student, source_only) is None  # the trained head is scored
    assert problem(Segmentor(), 'not a config (') is None  # unreadable: not judged
    assert untrained_teacher_problem(Segmentor(), {'state_dict': {}}, 'a.pth', 'x') is None


def test_a_frozen_teacher_head_is_required_only_the_frozen_backbone_may_be_absent(
        tmp_path, capsys):
    # every parameter without requires_grad counted as optional: a checkpoint without the
    # EMA teacher (frozen to the optimizer, trained by EMATeacherHook) fitted, and the
    # teacher then stayed random
    class Segmentor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # no BN in the heads (GN or none): its running statistics were the only
            # missing entries that gave the teacher away
            self.backbone = torch.nn.Conv2d(4, 4, 1)
            self.decode_head, self.teacher_head = (torch.nn.Conv2d(4, 3, 1),
                                                   torch.nn.Conv2d(4, 3, 1))
            self.backbone.requires_grad_(False)
            self.teacher_head.requires_grad_(False)

    model = Segmentor()
    trained = {k: v for k, v in model.state_dict().items() if not k.startswith('backbone.')}
    path = tmp_path / 'without_backbone.pth'
    torch.save({'state_dict': trained}, path)
    _fits(model, path)
    assert capsys.readouterr().err == ''
    path = tmp_path / 'without_teacher.pth'
    torch.save({'state_dict': {k: v for k, v in trained.items()
                               if not k.startswith('teacher_head.')}}, path)
    assert ("2 of the model's 6 weights are missing (teacher_head.weight, "
            'teacher_head.bias)' in _fit_message(model, path, capsys))


def test_a_checkpoint_of_other_classes_is_named_with_the_first_difference():
    # a 19-class head fits any 19-class config: with road and sidewalk swapped the test
    # printed a wrong mIoU (19.5 instead of 28.1) with exit 0
    from mmseg_saot.utils.checkpoint_checks import other_classes_problem
    trained = ('road', 'sidewalk', 'building')
    checkpoint = {'meta': {'dataset_meta': {'classes': trained}}}
    message = other_classes_problem(checkpoint, ['sidewalk', 'road', 'building'], 'c.pth',
                                    'test_dataloader.dataset')
    assert message == (
        '"c.pth" was trained on other classes than test_dataloader.dataset names: its class '
        '0 is "road" and test_dataloader.dataset\'s is "sidewalk", so each IoU would be '
        "scored against another class. Test on a set with the checkpoint's classes in its "
        'order (metainfo=dict(classes=...)).')
    assert 'it has 3 classes and test_dataloader.dataset 2' in other_classes_problem(
        checkpoint, ['road', 'sidewalk'], 'c.pth', 'test_dataloader.dataset')
    for classes in (list(trained), None):
        assert other_classes_problem(checkpoint, classes, 'c.pth', 'x') is None
    assert other_classes_problem({'meta': {}}, ['a'], 'c.pth', 'x') is None
    assert other_classes_problem({}, ['a'], 'c.pth', 'x') is None


def test_a_head_only_checkpoint_is_compared_also_by_a_model_that_saves_its_vit():
    # with save_frozen_weights=True the loading model had no digest key of its own, so
    # a head trained on other ViT weights passed without a word
    def model(seed, **options):
        torch.manual_seed(seed)
        built = _Head()
        built.backbone = DINOv2Backbone(model_name='vit_small_patch14_dinov2', out_indices=1,
                                        **options)
        return built
    head_only = {'state_dict': model(0).state_dict()}
    assert 'backbone.frozen_vit_sha256' in head_only['state_dict']
    message = load_from_warning(model(1, save_frozen_weights=True), head_only, 'a.pth')
    assert message.startswith('load_from: "a.pth" does not fit this model exactly: its head '
                              'was trained on the features of other frozen backbone weights')
    with pytest.warns(UserWarning, match='trained with other frozen ViT weights'):
        model(1, save_frozen_weights=True).load_state_dict(head_only['state_dict'])
    assert load_from_warning(model(0, save_frozen_weights=True), head_only, 'a.pth') is None


def test_a_checkpoint_with_part_of_a_vit_is_not_completed_with_the_models_own():
    # a 12-block ViT's weights loaded into a 13-block one: the loading pre-hook filled the
    # 13th block with the model's own weights, and the strict load said all keys matched
    def model(name, seed):
        torch.manual_seed(seed)
        built = _Head()
        built.backbone = DINOv2Backbone(model_name=name, out_indices=1,
                                        save_frozen_weights=True)
        return built
    saved = model('vit_small_patch14_dinov2', 0).state_dict()
    deeper = model('vit_small_patch14_dinov2', 1)
    extra_block = type(deeper.backbone.vit.blocks[0])(384, 6).requires_grad_(False)
    deeper.backbone.vit.blocks.append(extra_block)  # frozen, as the rest of the ViT
    message = load_from_warning(deeper, {'state_dict': saved}, 'a.pth')
    assert 'weights are missing (backbone.vit.blocks.12.' in message
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: '
                                           r'"backbone.vit.blocks.12.'):
        deeper.load_state_dict(saved)
