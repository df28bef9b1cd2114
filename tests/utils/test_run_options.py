from pathlib import Path

import pytest
from mmengine.config import Config

from mmseg_saot.utils.errors import ConfigError
from mmseg_saot.utils.run_options import check_run_options

CONFIGS = sorted((Path(__file__).parents[2] / 'configs' / 'saot').glob('*.py'))


@pytest.mark.parametrize('config', CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_passes(config):
    cfg = Config.fromfile(config)
    check_run_options(cfg, config.name)
    check_run_options(cfg, config.name, training=False)


def _base() -> Config:
    return Config(dict(
        train_dataloader=dict(batch_size=2, num_workers=2, persistent_workers=True),
        val_dataloader=dict(batch_size=1, num_workers=0, persistent_workers=False),
        test_dataloader=dict(batch_size=1, num_workers=0),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=100, val_interval=50),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01)),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=10)),
        param_scheduler=[dict(type='LinearLR', begin=0, end=10),
                         dict(type='PolyLR', begin=10, end=100)],
        val_cfg=dict(type='ValLoop'), val_evaluator=dict(type='IoUMetric'),
        test_cfg=dict(type='TestLoop'), test_evaluator=dict(type='IoUMetric')))


def _message(options: dict, training: bool = True) -> str:
    cfg = _base()
    cfg.merge_from_dict(options)
    with pytest.raises(ConfigError) as error:
        check_run_options(cfg, 'cfg.py', training=training)
    message = str(error.value)
    assert message.startswith('cfg.py: ') and message.endswith(
        ' (from the config or --cfg-options).')
    return message


def test_good_options_pass():
    check_run_options(_base(), 'cfg.py')
    check_run_options(_base(), 'cfg.py', training=False)


@pytest.mark.parametrize('key, value, expected', [
    ('train_dataloader.batch_size', 0, 'train_dataloader.batch_size must be an integer >= 1, '
     'got 0'),
    ('val_dataloader.batch_size', 1.5, 'val_dataloader.batch_size must be an integer >= 1, '
     'got 1.5'),
    ('train_dataloader.num_workers', -1, 'train_dataloader.num_workers must be an integer >= 0, '
     'got -1'),
    ('train_dataloader.num_workers', 0, 'train_dataloader.persistent_workers=True needs '
     'train_dataloader.num_workers >= 1, or set it to False'),
    ('train_cfg.max_iters', 0, 'train_cfg.max_iters must be an integer >= 1, got 0'),
    ('train_cfg.max_iters', 'abc', "train_cfg.max_iters must be an integer >= 1, got 'abc'"),
    ('train_cfg.val_interval', 0, 'train_cfg.val_interval must be an integer >= 1, got 0'),
    ('train_cfg.val_begin', -1, 'train_cfg.val_begin must be an integer >= 0, got -1'),
    ('optim_wrapper.optimizer.lr', -1, 'optim_wrapper.optimizer.lr must be a number >= 0, '
     'got -1'),
    ('optim_wrapper.optimizer.weight_decay', 'x', 'optim_wrapper.optimizer.weight_decay must '
     "be a number >= 0, got 'x'"),
    ('default_hooks.logger.interval', 0, 'default_hooks.logger.interval must be an integer '
     '>= 1, got 0'),
    ('param_scheduler.1.end', 10, 'param_scheduler[1] (PolyLR) ends at 10, not after its '
     'begin 10'),
])
def test_each_bad_option_is_named(key, value, expected):
    assert _message({key: value}) == f'cfg.py: {expected} (from the config or --cfg-options).'


def test_every_problem_is_listed_and_test_runs_check_the_test_dataloader_only():
    message = _message({'train_dataloader.batch_size': 0, 'optim_wrapper.optimizer.lr': -1})
    assert 'train_dataloader.batch_size' in message and '; optim_wrapper.optimizer.lr' in message
    cfg = _base()
    cfg.merge_from_dict({'train_dataloader.batch_size': 0})
    check_run_options(cfg, 'cfg.py', training=False)  # tools/test.py never reads it
    assert 'test_dataloader.batch_size' in _message({'test_dataloader.batch_size': 0},
                                                    training=False)


def test_a_val_or_test_loop_with_a_part_unset_is_named():
    assert _message({'test_evaluator': None}, training=False) == (
        'cfg.py: tools/test.py needs test_dataloader, test_cfg, test_evaluator; '
        'test_evaluator not set (from the config or --cfg-options).')
    assert 'val_cfg not set' in _message({'val_cfg': None})  # the runner refuses a mix
    assert 'test_dataloader not set' in _message({'test_dataloader': None})
    cfg = _base()
    cfg.merge_from_dict({'val_dataloader': None, 'val_cfg': None, 'val_evaluator': None})
    check_run_options(cfg, 'cfg.py')  # training without validation


def test_a_misspelt_metric_option_is_named_though_iou_metric_takes_any_keyword():
    # MMSeg's IoUMetric(**kwargs) ignores them: formatonly=True would score as if unset
    options = ('ignore_index, iou_metrics, nan_to_num, beta, collect_device, output_dir, '
               'format_only, prefix')
    assert _message({'test_evaluator.formatonly': True}, training=False) == (
        "cfg.py: test_evaluator.formatonly: IoUMetric has no option 'formatonly'. Did you "
        f"mean 'format_only'? It takes: {options} (from the config or --cfg-options).")
    cfg = _base()
    cfg.val_evaluator = [dict(type='ClassIoUMetric', iou_metric=['mDice'])]
    with pytest.raises(ConfigError, match="val_evaluator.0.iou_metric: ClassIoUMetric has "
                       "no option 'iou_metric'. Did you mean 'iou_metrics'"):
        check_run_options(cfg, 'cfg.py')
    cfg.val_evaluator = [dict(type='ClassIoUMetric', iou_metrics=['mDice'], prefix='v')]
    check_run_options(cfg, 'cfg.py')


def test_a_misspelt_hook_option_is_named_before_training_reaches_it():
    # CheckpointHook(**kwargs) hands them to Runner.save_checkpoint, which takes none:
    # the run used to stop with a TypeError at its first checkpoint
    message = _message({'default_hooks.checkpoint': dict(type='CheckpointHook', intervl=2)})
    assert message.startswith("cfg.py: default_hooks.checkpoint.intervl: CheckpointHook has "
                              "no option 'intervl'. Did you mean 'interval'? It takes: "
                              'interval, by_epoch, ')
    assert "custom_hooks.0.momentm: EMATeacherHook has no option 'momentm'" in _message(
        {'custom_hooks': [dict(type='EMATeacherHook', momentm=0.1)]}, training=False)
    cfg = _base()
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, save_best='mIoU')
    cfg.default_hooks.timer = None  # a disabled hook
    cfg.custom_hooks = [dict(type='EMATeacherHook', momentum=0.1), dict(type='NotAHook')]
    check_run_options(cfg, 'cfg.py')  # an unknown type is MMEngine's to name


def test_a_test_set_without_label_maps_is_predicted_only_with_format_only():
    images_only = dict(type='CityscapesDataset', pipeline=[dict(type='LoadImageFromFile'),
                                                           dict(type='PackSegInputs')])
    cfg = dict(test_dataloader=dict(dataset=images_only), test_cfg=dict(type='TestLoop'),
               test_evaluator=dict(type='ClassIoUMetric'))
    with pytest.raises(ConfigError, match="test_dataloader.dataset's pipeline reads no label "
                       'maps .* test_evaluator.format_only=True'):
        check_run_options(cfg, 'x.py', training=False)
    cfg['test_evaluator'] = dict(type='ClassIoUMetric', format_only=True, output_dir='out')
    check_run_options(cfg, 'x.py', training=False)


@pytest.mark.parametrize('options, expected', [
    # MMEngine's Runner reads these dicts itself: a TypeError or a numpy cast error from
    # inside it, or (env_cfg) silently nothing
    (dict(randomness=dict(sed=1)), "randomness.sed is not a setting MMEngine reads. Did "
     "you mean 'seed'? It takes: seed, diff_rank_seed, deterministic"),
    (dict(randomness=dict(seed='abc')), 'randomness.seed'),
    (dict(log_processor=dict(by_epoch=False, window_sise=5)),
     "log_processor.window_sise is not a setting MMEngine reads. Did you mean "
     "'window_size'?"),
    (dict(env_cfg=dict(cudnn_benchmrk=True)), "env_cfg.cudnn_benchmrk is not a setting "
     "MMEngine reads. Did you mean 'cudnn_benchmark'?")])
def test_a_misspelt_runner_setting_is_named(options, expected):
    assert expected in _message(options)
    good = _base()
    good.merge_from_dict(dict(randomness=dict(seed=0, diff_rank_seed=True),
                              log_processor=dict(by_epoch=False, window_size=5),
                              env_cfg=dict(cudnn_benchmark=True, mp_cfg={}, dist_cfg={})))
    check_run_options(good, 'cfg.py')
