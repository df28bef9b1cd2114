"""resume_change_problems: the optimizer and schedule changes a resume would undo."""
from mmengine.config import Config

from mmseg_saot.utils.resume_checks import resume_change_problems

SAVED_CFG = """
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=0.001))
param_scheduler = [dict(type='LinearLR', by_epoch=False, begin=0, end=30),
                   dict(type='PolyLR', by_epoch=False, begin=30, end=260)]
"""


def checkpoint():
    return dict(meta=dict(cfg=SAVED_CFG), param_schedulers=[
        dict(begin=0, end=30, by_epoch=False, last_step=29),
        dict(begin=30, end=260, by_epoch=False, last_step=70)])


def config(**changes):
    cfg = Config.fromstring(SAVED_CFG, '.py')
    cfg.merge_from_dict(changes)
    return cfg


def test_the_saved_settings_are_no_problem():
    assert resume_change_problems(checkpoint(), config()) == []
    # other settings MMEngine takes from the config on resume are not compared
    assert resume_change_problems(checkpoint(), config(**{'optim_wrapper.clip_grad': None})) == []


def test_a_longer_schedule_another_scheduler_count_or_optimizer_is_named():
    assert resume_change_problems(checkpoint(), config(**{'param_scheduler.1.end': 400})) == [
        'param_scheduler.1.end: 400 in the config, 260 in the checkpoint']
    cfg = config()
    cfg.param_scheduler = cfg.param_scheduler[:1]
    assert resume_change_problems(checkpoint(), cfg) == [
        'param_scheduler: 1 schedulers in the config, 2 in the checkpoint']
    cfg = config(**{'optim_wrapper.optimizer': dict(_delete_=True, type='mmengine.SGD',
                                                    lr=0.01, momentum=0.9)})
    assert resume_change_problems(checkpoint(), cfg) == [
        'optim_wrapper.optimizer.type: SGD in the config, AdamW in the checkpoint']


def test_an_end_left_out_is_max_iters_as_mmengine_sets_it():
    # resuming a run stopped at 4 of 6 with max_iters=12 kept the PolyLR's end at 6 and
    # trained iterations 7-12 at lr 0; a smaller max_iters only stops it early
    saved = checkpoint()
    saved['param_schedulers'][1]['end'] = 6
    cfg = config(**{'train_cfg': dict(type='IterBasedTrainLoop', max_iters=6)})
    del cfg.param_scheduler[1]['end']
    assert resume_change_problems(saved, cfg) == []
    cfg.train_cfg.max_iters = 12
    assert resume_change_problems(saved, cfg) == [
        'param_scheduler.1.end: 12 in the config (train_cfg.max_iters), 6 in the checkpoint']
    cfg.train_cfg.max_iters = 4  # stopping early on the run's schedule is fine
    assert resume_change_problems(saved, cfg) == []


def test_epoch_based_schedulers_and_unreadable_saved_configs_are_not_compared():
    saved = checkpoint()
    saved['param_schedulers'][1]['by_epoch'] = True
    saved['meta']['cfg'] = 'this is ( not python'
    cfg = config(**{'param_scheduler.1.end': 400, 'param_scheduler.1.by_epoch': True,
                    'optim_wrapper.optimizer.type': 'SGD'})
    assert resume_change_problems(saved, cfg) == []
