# Runtime shared by every mmseg_saot experiment: MMSeg's defaults plus the
# plugin import that registers DINOv2Backbone, MLPHead, GTA5Dataset, ...
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['mmseg_saot'], allow_failed_imports=False)

# A fixed seed: the dataloaders are built before `--resume` restores a checkpoint, so
# without one each launch draws a new seed and a resumed run does not continue the
# run it resumes (other shuffles, other augmentations). Change it for another draw: it
# also seeds EMATeacherUDA's strong views and dropout (with model.seed).
randomness = dict(seed=0)
