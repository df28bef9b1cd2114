# Runtime shared by every mmseg_saot experiment: MMSeg's defaults plus the
# plugin import that registers DINOv2Backbone, MLPHead, GTA5Dataset, ...
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['mmseg_saot'], allow_failed_imports=False)
