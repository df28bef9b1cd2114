# GTA5 -> Cityscapes with a frozen DINOv2 ViT-L/14 (paper, Table 1).
# Stage so far: the MLP head trained on source labels, evaluated on the
# target (the source-only baseline).
_base_ = [
    '../_base_/models/dinov2_mlp.py',  # frozen ViT-L/14 + MLP head
    '../_base_/datasets/gta5.py',  # source: GTA5, 518x518 crops
    '../_base_/datasets/cityscapes.py',  # target: Cityscapes val at 518x1036
    '../_base_/schedules/head_20k.py',
    '../_base_/default_runtime.py',
]
