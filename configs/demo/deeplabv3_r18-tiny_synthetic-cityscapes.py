# DeepLabv3 in miniature on synthetic Cityscapes: the paper's set-up (ResNet backbone with
# zero padding, ASPP head, Cityscapes labels) small enough to train on 2 CPU cores in minutes.
#
#   python tools/dataset_converters/make_synthetic_cityscapes.py data/synthetic_cityscapes
#   python tools/train.py configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py
#
# The attacked tensor is the backbone's last stage (128 channels), the one the ASPP head reads.
# A different data location: --cfg-options train_dataloader.dataset.data_root=DIR
#   val_dataloader.dataset.data_root=DIR test_dataloader.dataset.data_root=DIR
custom_imports = dict(imports=['posattack'], allow_failed_imports=False)
default_scope = 'mmseg'

data_root = 'data/synthetic_cityscapes'
dataset_type = 'CityscapesDataset'
image_scale = (256, 128)  # (w, h), mmcv convention; the generator's default size
crop_size = (128, 256)  # (h, w)
num_classes = 19
norm_cfg = dict(type='BN', requires_grad=True)  # single process on CPU: plain BN

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        base_channels=16,  # stages give 16, 32, 64, 128 channels
        stem_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),  # output stride 8, as DeepLabv3-D8
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),  # convolutions zero-pad: the paper's setting
    decode_head=dict(
        type='ASPPHead',
        in_channels=128,
        in_index=3,
        channels=64,
        # the paper's (1, 12, 24, 36) on a 64x128 map (stride 16 at 1024x2048), scaled to 16x32
        dilations=(1, 3, 6, 9),
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        # Online hard example mining: the loss concentrates on pixels not yet learnt, mostly
        # the thin, rare classes (pole, traffic light, traffic sign, person), so that a few
        # hundred iterations learn them too. (class_weight would do it too, but mmseg 1.2.2
        # crashes on it when labels contain the ignore index 255.)
        sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=20000),
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# No RandomFlip, deliberately: a horizontal flip during training teaches the network that
# left and right are interchangeable, which is exactly the position knowledge the attack
# looks for. In the synthetic scenes sidewalk and buildings (right) look like terrain and
# walls (left): a flipped scene with unflipped meaning would make them unlearnable. Real
# Cityscapes models are trained with flips and still encode position through padding; this
# demo must show the effect in minutes.
# No random rescaling or cropping either: the scenes are already at the crop size, and
# absolute position is what the demo is about.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),  # no-op at default size
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    # annotations after Resize: metrics compare against the full-resolution ground truth
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,  # 2 CPU cores: decoding 128x256 PNGs in the main process is cheaper
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 600
optim_wrapper = dict(
    type='OptimWrapper',
    # AdamW with its usual weight decay trains this small net from scratch fastest.
    optimizer=dict(type='AdamW', lr=3e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=30, by_epoch=False),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=30, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1,
        save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
