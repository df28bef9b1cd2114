# gta2cs.py with a smaller frozen backbone, DINOv2 ViT-B/14 with 4 registers
# (timm vit_base_patch14_reg4_dinov2): the pattern for any backbone swap, as
# MMSegmentation keeps one file per backbone variant. Everything else, SAOT
# labelling and both stages included, is gta2cs.py's.
#   python tools/train.py configs/saot/gta2cs_vitb14_reg4.py
_base_ = ['./gta2cs.py']

model = dict(
    backbone=dict(model_name='vit_base_patch14_reg4_dinov2'),  # patch 14, as ViT-L/14
    decode_head=dict(in_channels=[768, 768, 768, 768]))  # ViT-B embed_dim, last 4 blocks
