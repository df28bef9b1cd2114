"""EMATeacherUDA: loss steps per stage, teacher untouched by gradients, predict_on."""
import re

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmseg_saot.utils.errors import ConfigError, UserInputError

SIZE = (28, 42)  # 2x3 patches of 14 px


def build(**overrides):
    init_default_scope('mmseg')
    cfg = dict(
        type='EMATeacherUDA',
        data_preprocessor=dict(type='UDADataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               size_divisor=14, seg_pad_val=255,
                               test_cfg=dict(size_divisor=14)),
        backbone=dict(type='DINOv2Backbone', model_name='vit_small_patch14_dinov2',
                      out_indices=1, pretrained=False),
        decode_head=dict(type='MLPHead', in_channels=[384], in_index=[0], channels=8,
                         num_classes=4, dropout_ratio=0.0,
                         norm_cfg=dict(type='BN', requires_grad=True)),
        test_cfg=dict(mode='whole'))
    cfg.update(overrides)
    torch.manual_seed(0)
    cfg = ConfigDict(cfg)
    return MODELS.build(cfg)


def branch(seed, weights=False):
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, *SIZE), generator=gen, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=SIZE, ori_shape=SIZE))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, *SIZE), generator=gen))
        if weights:
            sample.set_data({'gt_pixel_weight': PixelData(data=torch.rand(1, *SIZE,
                                                                          generator=gen))})
        samples.append(sample)
    return inputs, samples


def sample_of(size):
    return SegDataSample(metainfo=dict(img_shape=size, ori_shape=size))


def uda_batch(model):
    (src, src_samples), (tgt, tgt_samples) = branch(0), branch(1, weights=True)
    return model.data_preprocessor(dict(inputs=dict(source=src, target=tgt),
                                        data_samples=dict(source=src_samples,
                                                          target=tgt_samples)), True)


def test_stage1_has_source_and_pseudo_label_losses():
    model = build()
    losses = model.loss(**uda_batch(model))
    assert {'src.loss_ce', 'tgt.loss_ce', 'src.acc_seg', 'tgt.acc_seg'} <= set(losses)
    assert not any(k.startswith('mix.') for k in losses)


def test_source_weight_zero_drops_the_source_step_and_weights_scale():
    model = build(source_weight=0.0, pseudo_label_weight=2.0)
    losses = model.loss(**uda_batch(model))
    assert not any(k.startswith('src.') for k in losses)
    reference = build().loss(**uda_batch(model))['tgt.loss_ce']
    torch.testing.assert_close(losses['tgt.loss_ce'], 2 * reference)


def test_a_plain_batch_is_supervised():
    model = build()
    inputs, samples = branch(0)
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    assert set(model.loss(**data)) == {'sup.loss_ce', 'sup.acc_seg'}


def test_stage2_needs_the_stage_hook():
    model = build()
    model.stage = 'self_training'
    with pytest.raises(UserInputError, match='UDAStageHook'):
        model.loss(**uda_batch(model))


def test_stage2_self_training_is_seeded_by_the_iteration():
    model = build()
    data = uda_batch(model)
    model.set_train_state('self_training', 7)
    first = model.loss(**data)
    assert {'src.loss_ce', 'mix.loss_ce', 'mix.teacher_confident'} <= set(first)
    assert not any(k.startswith('tgt.') for k in first)
    again = model.loss(**data)
    torch.testing.assert_close(first['mix.loss_ce'], again['mix.loss_ce'])
    model.set_train_state('self_training', 8)
    other = model.loss(**data)
    assert not torch.allclose(first['mix.loss_ce'], other['mix.loss_ce'])


def test_the_runs_seed_and_the_rank_draw_other_strong_views():
    # the views followed model.seed alone: another randomness.seed repeated them, and
    # every DDP rank drew the same jitter, blur and ClassMix choices
    model = build()
    data = uda_batch(model)
    model.set_train_state('self_training', 7)

    def mix_loss(run_seed, rank):
        model.set_run_seed(run_seed, rank)
        return model.loss(**data)['mix.loss_ce']

    first = mix_loss(0, 0)
    torch.testing.assert_close(mix_loss(0, 0), first)
    assert not torch.allclose(mix_loss(1, 0), first)
    assert not torch.allclose(mix_loss(0, 1), first)
    model.set_run_seed(0, 0)  # the default run draws what it drew before the run seed
    assert model._iteration_seed(7) == model.seed * 100003 + 7


def test_the_runs_seed_draws_other_dropout_masks_the_same_on_every_rank():
    model = build(decode_head=dict(type='MLPHead', in_channels=[384], in_index=[0],
                                   channels=8, num_classes=4, dropout_ratio=0.5))
    model.train()
    data = uda_batch(model)

    def loss(run_seed, rank):
        model.set_run_seed(run_seed, rank)
        model.set_train_state('pseudo_labels', 3)
        return model.loss(**data)['src.loss_ce']

    first = loss(0, 0)
    assert not torch.allclose(loss(1, 0), first)
    torch.testing.assert_close(loss(0, 1), first)  # diff_rank_seed changes runner.seed


@pytest.mark.parametrize('stage_hook', [True, False])
def test_dropout_is_seeded_by_the_iteration_so_a_resumed_run_repeats_it(stage_hook):
    # MMEngine restores no RNG state on --resume: the step's dropout masks must come from
    # the iteration (UDAStageHook's, or the loop's in the message hub), not the history
    from mmengine.logging import MessageHub
    model = build(decode_head=dict(type='MLPHead', in_channels=[384], in_index=[0],
                                   channels=8, num_classes=4, dropout_ratio=0.5))
    model.train()
    data = uda_batch(model)
    hub = MessageHub.get_instance('test_dropout_rng')
    hub.update_info('loop_stage', 'train')

    def loss_at(iteration, history):
        torch.manual_seed(history)  # the global RNG state the step starts from
        if stage_hook:
            model.set_train_state('pseudo_labels', iteration)
        hub.update_info('iter', iteration)
        return model.loss(**data)['src.loss_ce']

    first = loss_at(5, history=0)
    state = torch.get_rng_state()
    torch.testing.assert_close(loss_at(5, history=123), first)  # same step, other history
    assert not torch.allclose(loss_at(6, history=0), first)  # another step: other masks
    loss_at(5, history=0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    hub.update_info('loop_stage', 'val')  # outside training: the global RNG, as it is
    if not stage_hook:
        assert not torch.allclose(loss_at(5, history=123), first)


def test_gradients_reach_the_student_only():
    model = build()
    model.set_train_state('self_training', 0)
    losses = model.loss(**uda_batch(model))
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is not None for p in model.decode_head.parameters() if p.requires_grad)
    assert all(p.grad is None and not p.requires_grad for p in model.teacher_head.parameters())
    assert all(p.grad is None for p in model.backbone.parameters())


def test_class_mix_without_a_source_branch_is_a_clear_error():
    model = build()
    model.set_train_state('self_training', 0)
    tgt, samples = branch(1, weights=True)
    data = model.data_preprocessor(dict(inputs=dict(target=tgt),
                                        data_samples=dict(target=samples)), True)
    with pytest.raises(UserInputError, match='ClassMix'):
        model.loss(**data)
    model.class_mix = False
    assert 'mix.loss_ce' in model.loss(**data)


def test_teacher_stays_in_eval_mode():
    model = build()
    model.train()
    assert model.decode_head.training and not model.teacher_head.training


def test_predict_on_selects_the_head():
    model = build()
    with torch.no_grad():
        for p in model.teacher_head.conv_seg.parameters():
            p.zero_()
    inputs, samples = branch(2)
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)
    model.eval()
    teacher = model.predict(**data)[0].seg_logits.data
    assert torch.all(teacher == 0)  # a zeroed classifier
    model.predict_on = 'student'
    assert not torch.all(model.predict(**data)[0].seg_logits.data == 0)


@pytest.mark.parametrize('test_cfg', [dict(mode='whole'),
                                      dict(mode='slide', crop_size=(28, 28), stride=(14, 14))])
def test_val_step_branches_equals_val_step_per_head_with_one_backbone_pass(test_cfg):
    model = build(test_cfg=test_cfg)
    with torch.no_grad():  # teacher and student heads must differ
        for p in model.teacher_head.conv_seg.parameters():
            p.mul_(-1.0)
    model.eval()
    inputs, samples = branch(3)
    batch = dict(inputs=inputs, data_samples=samples)
    expected = {}
    for head in ('teacher', 'student'):
        model.predict_on = head
        expected[head] = [s.seg_logits.data for s in model.val_step(batch)]
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    model.predict_on = 'teacher'
    outputs = model.val_step_branches(batch, ('teacher', 'student'))
    crops = 1 if test_cfg['mode'] == 'whole' else 2  # 28 x 42 in 28 x 28 crops, stride 14
    assert len(calls) == crops and model.predict_on == 'teacher'
    for head in ('teacher', 'student'):
        for got, want in zip(outputs[head], expected[head]):
            torch.testing.assert_close(got.seg_logits.data, want)
    assert not torch.equal(outputs['teacher'][0].seg_logits.data,
                           outputs['student'][0].seg_logits.data)
    assert outputs['teacher'][0] is not outputs['student'][0]  # own copies of the samples
    with pytest.raises(ValueError, match='branches'):
        model.val_step_branches(batch, ('ema', ))


def test_bad_options_are_named():
    with pytest.raises(ValueError, match='predict_on'):
        build(predict_on='ema')
    with pytest.raises(ValueError, match='teacher_threshold'):
        build(teacher_threshold=1.5)
    with pytest.raises(ValueError, match='stage'):
        build().set_train_state('stage3', 0)
    with pytest.raises(ConfigError, match='model.backbone.checkpoint'):
        build(pretrained='dinov2.pth')


def test_pretrained_none_is_accepted_as_mmseg_init_model_passes_it():
    assert build(pretrained=None).predict_on == 'teacher'


def test_feature_cache_serves_repeated_inputs():
    model = build(feature_cache=True, feature_cache_gb=0.1)
    data = uda_batch(model)
    first = model.loss(**data)
    second = model.loss(**data)
    assert model.feature_cache.hits == 4 and model.feature_cache.misses == 4
    torch.testing.assert_close(first['tgt.loss_ce'], second['tgt.loss_ce'])
    # logged with the losses (not summed into them): the step's share of cached inputs
    assert first['feature_cache_hits'] == 0.0 and second['feature_cache_hits'] == 1.0
    loss, log_vars = model.parse_losses(second)
    torch.testing.assert_close(loss, second['src.loss_ce'] + second['tgt.loss_ce'])
    assert log_vars['feature_cache_hits'] == 1.0


def test_feature_cache_hits_count_only_the_inputs_of_the_step():
    model = build(feature_cache=True, feature_cache_gb=0.1)
    data = uda_batch(model)
    model.loss(**data)
    source_only = dict(inputs=dict(source=data['inputs']['source'],
                                   target=data['inputs']['target'].flip(-1)),
                       data_samples=data['data_samples'])
    assert model.loss(**source_only)['feature_cache_hits'] == 0.5  # source cached, target new


def test_without_the_feature_cache_nothing_about_it_is_logged():
    model = build()
    assert 'feature_cache_hits' not in model.loss(**uda_batch(model))


def test_teacher_confident_is_the_share_of_confident_target_pixels():
    model = build(teacher_threshold=0.0)
    model.set_train_state('self_training', 0)
    assert model.loss(**uda_batch(model))['mix.teacher_confident'] == 1.0
    model.teacher_threshold = 0.999  # 4 classes: a random head is never that sure
    assert model.loss(**uda_batch(model))['mix.teacher_confident'] == 0.0


@pytest.mark.parametrize('head_change, message', [
    (dict(in_channels=[768]), r'in_channels=\[768\], but the backbone vit_small_patch14_dinov2 '
     r'gives 1 maps of 384 channels; set model.decode_head.in_channels=\[384\]'),
    (dict(in_channels=[384, 384], in_index=[0, 1]), r'in_index=\[0, 1\].*gives 1 maps of 384 '
     r'channels; set model.decode_head.in_channels=\[384\] model.decode_head.in_index=\[0\] '
     r'\(or other indices within 0..0'),
])
def test_a_head_that_does_not_fit_the_backbone_stops_the_build(head_change, message):
    head = dict(type='MLPHead', in_channels=[384], in_index=[0], channels=8, num_classes=4,
                norm_cfg=dict(type='BN', requires_grad=True))
    head.update(head_change)
    with pytest.raises(ConfigError, match=f'EMATeacherUDA: .*{message}'):
        build(decode_head=head)


@pytest.mark.parametrize('option, value, message', [
    ('teacher_threshold', 1.0, 'teacher_threshold must be a number >= 0 and < 1, got 1.0'),
    ('source_weight', 'abc', "source_weight must be a number >= 0, got 'abc'"),
    ('blur_probability', 2, 'blur_probability must be a number >= 0 and <= 1, got 2'),
    ('feature_cache_gb', 'abc', "feature_cache_gb must be a number > 0, got 'abc'"),
    # factors drawn from 1 +- strength went negative: black or inverted strong views
    ('jitter_strength', 1.5, 'jitter_strength must be a number >= 0 and <= 1, got 1.5'),
])
def test_a_bad_number_is_named_when_the_model_is_built(option, value, message):
    with pytest.raises(ConfigError, match=f'^EMATeacherUDA: {message}.$'):
        build(**{option: value})


def test_a_feature_cache_dir_without_the_cache_is_said_to_be_unused(tmp_path):
    with pytest.warns(UserWarning, match=f"feature_cache_dir='{tmp_path}' is not used: the "
                      'feature cache is off'):
        model = build(feature_cache_dir=str(tmp_path))
    assert model.feature_cache is None


def test_a_feature_cache_dir_that_cannot_be_made_is_named(tmp_path):
    afile = tmp_path / 'afile'
    afile.write_text('')
    with pytest.raises(UserInputError, match=f'^model.feature_cache_dir: cannot create the '
                       f'folder {afile}/fc '):
        build(feature_cache=True, feature_cache_dir=str(afile / 'fc'))
    model = build(feature_cache=True, feature_cache_dir=str(tmp_path / 'fc'))
    model.extract_feat(torch.zeros(1, 3, *SIZE))
    assert model.feature_cache.folder.startswith(str(tmp_path / 'fc'))


def test_the_disk_cache_is_named_by_the_weights_loaded_before_its_first_use(tmp_path):
    # it was named when the model was built: weights a checkpoint brought later
    # (load_from, --resume) were cached under, and later read back as, the built ones'
    built = build(feature_cache=True, feature_cache_dir=str(tmp_path))
    built.extract_feat(torch.zeros(1, 3, *SIZE))
    model = build(feature_cache=True, feature_cache_dir=str(tmp_path))
    with torch.no_grad():
        for param in model.backbone.parameters():
            param.add_(0.01)
    image = torch.rand(1, 3, *SIZE)
    got = model.extract_feat(image)[0]
    assert model.feature_cache.folder != built.feature_cache.folder
    torch.testing.assert_close(got, model.backbone(image)[0], atol=2e-2, rtol=0)


def test_the_disk_cache_folder_changes_with_the_backbones_feature_version(
        tmp_path, monkeypatch):
    model = build(feature_cache=True, feature_cache_dir=str(tmp_path))
    folder = model._cache_folder()
    monkeypatch.setattr(type(model.backbone), 'feature_version',
                        type(model.backbone).feature_version + 1)
    assert model._cache_folder() != folder


def test_a_trainable_neck_runs_after_the_cache_and_learns(tmp_path):
    # the cache held the neck's outputs with their autograd graph: on a hit the backward
    # went through a freed graph (RuntimeError), and the neck could not learn from it
    model = build(feature_cache=True, neck=dict(type='MultiLevelNeck', in_channels=[384],
                                                out_channels=384, scales=[1]))
    model.train()
    model.set_train_state('pseudo_labels', 0)
    for _ in range(2):  # the same images: the second pass hits the cache
        losses = model.loss(**uda_batch(model))
        total = sum(value for name, value in losses.items() if 'loss' in name)
        total.backward()
        assert all(p.grad is not None for p in model.neck.parameters())
        model.zero_grad()
    assert float(losses['feature_cache_hits']) == 1.0


def test_the_teacher_predicts_through_its_own_frozen_neck():
    # the teacher head read the student's neck, which trains: the teacher was not an
    # average of the student, and its labels moved with every student step
    neck = dict(type='MultiLevelNeck', in_channels=[384], out_channels=384, scales=[1])
    model = build(neck=neck)
    assert not any(p.requires_grad for p in model.teacher_neck.parameters())
    model.train()
    assert not model.teacher_neck.training and model.neck.training
    model.eval()
    image = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        for module in (model.neck, model.teacher_neck):
            for param in module.parameters():
                param.normal_()
        before = {b: model.extract_feat(image, b)[0].clone() for b in ('teacher', 'student')}
        for param in model.neck.parameters():  # a student step: the teacher is unmoved
            param.add_(1.0)
        torch.testing.assert_close(model.extract_feat(image, 'teacher')[0], before['teacher'])
        assert not torch.allclose(model.extract_feat(image)[0], before['student'])
        labels, _ = model.teacher_pseudo_labels(image, [sample_of(SIZE)])
        logits = model.teacher_head(model.teacher_neck(model.backbone(image)))
        expected = torch.nn.functional.interpolate(logits, size=SIZE, mode='bilinear',
                                                   align_corners=False).argmax(1)
        confident = labels != 255
        assert confident.any() and (labels[confident] == expected[confident]).all()


def test_an_auxiliary_head_is_refused_by_name():
    # it was built and handed to the optimiser, but no stage computed its loss
    aux = dict(type='FCNHead', in_channels=384, channels=8, num_convs=1, num_classes=4)
    with pytest.raises(ConfigError, match='model.auxiliary_head is not supported'):
        build(auxiliary_head=aux)


def test_a_segmentor_init_cfg_initialises_the_head_not_the_frozen_backbone():
    # mmengine applies a parent's init_cfg to every submodule: it re-drew the loaded ViT
    model = build(init_cfg=dict(type='Normal', layer=['Linear', 'Conv2d'], std=0.5))
    backbone = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    head = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
    model.init_weights()
    assert len(backbone) > 100  # the ViT's (its state_dict holds only a checksum)
    for name, value in model.backbone.named_parameters():
        assert torch.equal(value, backbone[name]), name
    assert any(not torch.equal(v, head[k]) for k, v in model.decode_head.state_dict().items())


@pytest.mark.parametrize('overrides, named', [
    (dict(data_preprocessor=dict(type='UDADataPreProcessor', size_divisor=16,
                                 test_cfg=dict(size_divisor=28))),
     'model.data_preprocessor.size_divisor=16'),
    (dict(data_preprocessor=dict(type='UDADataPreProcessor', size=(32, 42),
                                 test_cfg=dict(size_divisor=16))),
     'model.data_preprocessor.size=(32, 42), model.data_preprocessor.test_cfg.size_divisor=16'),
    (dict(test_cfg=dict(mode='slide', crop_size=(40, 40), stride=(20, 20))),
     'model.test_cfg.crop_size=(40, 40)'),
])
def test_inputs_that_do_not_cover_whole_patches_are_refused(overrides, named):
    # a /14 ViT behind size_divisor=16 (voc.py's, for ViT-B/16) pads each input to whole
    # patches itself, and the head's logits were stretched over the unpadded image:
    # every prediction shifted, and training read misaligned labels
    with pytest.raises(ConfigError, match=re.escape(
            f'EMATeacherUDA: {named} is not a multiple of the patch size of '
            'vit_small_patch14_dinov2 (14 px)')):
        build(**overrides)
    build(test_cfg=dict(mode='slide', crop_size=(42, 28), stride=(14, 14)))


@pytest.mark.parametrize('test_cfg', [None, dict(pad_val=0)])
def test_test_images_without_padding_are_refused(test_cfg):
    # MMSeg's preprocessor pads test images only by its test_cfg: without it a 230x450
    # image was padded by the backbone and 48 % of the predicted pixels moved
    preprocessor = dict(type='UDADataPreProcessor', size_divisor=14, test_cfg=test_cfg)
    with pytest.raises(ConfigError, match=re.escape(
            'EMATeacherUDA: model.data_preprocessor.test_cfg pads no test image') + '.*' +
            re.escape('set model.data_preprocessor.test_cfg=dict(size_divisor=14).')):
        build(data_preprocessor=preprocessor)
    # a sliding window of whole patches takes crops of its own size
    build(data_preprocessor=preprocessor,
          test_cfg=dict(mode='slide', crop_size=(42, 28), stride=(14, 14)))



def test_a_head_that_cannot_weigh_pixels_is_a_config_error():
    # a stock mmseg head (FCNHead) ignores gt_pixel_weight: the SAOT confidences and
    # teacher_threshold changed nothing, silently
    head = dict(type='FCNHead', in_channels=384, in_index=0, channels=8, num_convs=1,
                concat_input=False, num_classes=4)
    with pytest.raises(ConfigError, match=(
            r'EMATeacherUDA: model.decode_head FCNHead does not weigh pixels \(it ignores '
            r'gt_pixel_weight\)')):
        build(decode_head=head)


def test_training_with_a_data_preprocessor_without_branches_is_a_config_error():
    # SegDataPreProcessor failed on the first source/target batch with KeyError: 0;
    # testing (TTA too) may use it
    model = build(data_preprocessor=dict(type='SegDataPreProcessor', size_divisor=14,
                                         seg_pad_val=255, test_cfg=dict(size_divisor=14)))
    with pytest.raises(ConfigError, match=(
            'EMATeacherUDA: training needs model.data_preprocessor to be a '
            'UDADataPreProcessor')):
        model.train_step(dict(source=dict(), target=dict()), optim_wrapper=None)


def test_the_mix_canvas_is_padded_with_the_preprocessors_pad_val_and_masked(monkeypatch):
    # the canvas added zeros beside the preprocessor's own padding (pad_val=-3): one
    # student image held two kinds of padding, one of which the teacher never saw
    from mmseg_saot.models.segmentors import ema_teacher_uda
    original, seen = ema_teacher_uda.strong_view, {}

    def capture(source, source_labels, target, *args, **kwargs):
        seen['target'], seen['valid'] = target, kwargs['valid']  # the canvas and its image
        return original(source, source_labels, target, *args, **kwargs)

    monkeypatch.setattr(ema_teacher_uda, 'strong_view', capture)
    model = build(data_preprocessor=dict(type='UDADataPreProcessor', mean=[123.675, 116.28,
                                                                         103.53],
                                         std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                                         size_divisor=14, seg_pad_val=255, pad_val=-3,
                                         test_cfg=dict(size_divisor=14)))
    gen = torch.Generator().manual_seed(0)
    branches = {}
    for name, size in (('source', (42, 42)), ('target', (28, 42))):
        inputs, samples = [], []
        for _ in range(2):
            inputs.append(torch.randint(0, 256, (3, *size), generator=gen, dtype=torch.uint8))
            sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size))
            sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, *size), generator=gen))
            sample.set_data({'gt_pixel_weight': PixelData(data=torch.ones(1, *size))})
            samples.append(sample)
        branches[name] = (inputs, samples)
    data = model.data_preprocessor(dict(
        inputs={k: v[0] for k, v in branches.items()},
        data_samples={k: v[1] for k, v in branches.items()}), True)
    model.set_train_state('self_training', 3)
    model.loss(**data)
    assert seen['target'].shape[-2:] == (42, 42)
    assert bool((seen['target'][:, :, 28:, :] == -3).all())
    # the strong view is told which pixels are the target image's: jitter and blur keep
    # the padding out of them
    assert bool(seen['valid'][:, :28].all()) and not bool(seen['valid'][:, 28:].any())


def test_a_window_larger_than_the_image_keeps_each_pixel_on_its_own_patch():
    # a sliding window crops a 20x30 image as it is: the backbone pads it to 28x42 and the
    # logits used to be stretched from the padded map over 20x30, moving most pixels
    model = build(data_preprocessor=dict(type='UDADataPreProcessor', size_divisor=14),
                  test_cfg=dict(mode='slide', crop_size=(42, 42), stride=(14, 14)))
    model.eval()
    model.predict_on = 'student'
    image = torch.randn(1, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    meta = dict(img_shape=(20, 30), ori_shape=(20, 30))
    with torch.no_grad():
        logits = model.inference(image, [meta])
        maps = model.decode_head(model.backbone(image))
        padded = torch.nn.functional.interpolate(maps, size=(28, 42), mode='bilinear',
                                                 align_corners=False)
    assert logits.shape == (1, 4, 20, 30)
    torch.testing.assert_close(logits, padded[..., :20, :30])
    assert model.backbone.padded_size((20, 30)) == (28, 42)


def test_a_backbone_other_than_dinov2_still_predicts():
    # encode_decode asked every backbone for DINOv2Backbone.padded_size: an AttributeError
    # at the first validation of any other backbone
    from mmengine.model import BaseModule

    @MODELS.register_module(name='_TinyConvForTest', force=True)
    class TinyConv(BaseModule):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)
            self.requires_grad_(False)

        def forward(self, images):
            return (self.conv(images), )

    model = build(backbone=dict(type='_TinyConvForTest'),
                  decode_head=dict(type='MLPHead', in_channels=[8], in_index=[0], channels=8,
                                   num_classes=4, dropout_ratio=0.0,
                                   norm_cfg=dict(type='BN', requires_grad=True)))
    model.eval()
    with torch.no_grad():
        logits = model.inference(torch.randn(1, 3, 28, 28),
                                 [dict(img_shape=(28, 28), ori_shape=(28, 28), pad_shape=(28, 28))])
    assert logits.shape == (1, 4, 28, 28)
