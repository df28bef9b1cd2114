# PASCAL VOC 2012 train(+aug) -> val with a frozen ViT-B/16 (paper: 47.5
# mIoU). DINOv2 has only /14 models, so the paper's "ViT-B/16" is taken to be
# DINO v1 (timm: vit_base_patch16_224.dino).
_base_ = [
    '../_base_/models/dinov2_mlp.py',
    '../_base_/datasets/voc12aug.py',  # source train+aug, target val
    '../_base_/schedules/head_20k.py',
    '../_base_/default_runtime.py',
]
data_preprocessor = dict(size_divisor=16,  # ViT-B/16 patch size
                         test_cfg=dict(size_divisor=16))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(model_name='vit_base_patch16_224.dino'),  # paper: ViT-B/16
    decode_head=dict(in_channels=[768, 768, 768, 768],  # ViT-B embed_dim
                     num_classes=21))  # VOC: 20 classes + background
