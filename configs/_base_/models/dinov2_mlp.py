# Frozen DINOv2 ViT-L/14 + per-pixel MLP head (paper: frozen backbone, MLP
# decoder). Swap the backbone with model.backbone.model_name (any timm ViT)
# and set decode_head.in_channels to its embed_dim.
norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN when not distributed
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],  # ImageNet statistics, as DINOv2 uses
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=14,  # DINOv2 patch size: pad inputs to whole patches
    test_cfg=dict(size_divisor=14))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='DINOv2Backbone',
        model_name='vit_large_patch14_dinov2',  # paper: DINOv2 ViT-L/14
        out_indices=4,  # last 4 blocks, concatenated by the head
        checkpoint=None,  # local .safetensors/.pth; else timm hub below
        pretrained=True,  # official weights via timm (needs the hub)
        feature_dtype=None),  # 'bf16' on GPUs: ~2x faster frozen features
    decode_head=dict(
        type='MLPHead',
        in_channels=[1024, 1024, 1024, 1024],  # ViT-L/14 embed_dim per map
        in_index=[0, 1, 2, 3],
        channels=256,
        num_layers=1,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=norm_cfg,
        ignore_index=255,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
