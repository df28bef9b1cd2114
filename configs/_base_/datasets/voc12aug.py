# PASCAL VOC 2012 with the SBD augmented set (10,582 train images): the
# paper's VOC setting transfers labels from train(+aug) to val. MMSeg's own
# base already describes it; prepare with tools/dataset_converters/voc_aug.py.
_base_ = ['mmseg::_base_/datasets/pascal_voc12_aug.py']

crop_size = (512, 512)  # 32x32 patches of 16 px for ViT-B/16
