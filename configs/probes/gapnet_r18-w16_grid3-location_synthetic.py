# GAPNet (Islam et al., ICCV 2021, Table 1) in miniature: ResNetV1c-18 at 1/4 width, then a
# 1x1 conv to one channel per grid cell, then global average pooling. Input: a 16x16 crop of a
# synthetic Cityscapes scene in one cell of a 3x3 canvas of zeros; label: the cell.
#
#   python tools/dataset_converters/make_synthetic_cityscapes.py data/synthetic_cityscapes
#   python tools/probe.py train configs/probes/gapnet_r18-w16_grid3-location_synthetic.py
#
# tools/probe.py table sets grid size, task, padding and network for each row of Table 1;
# on its own this config trains the zero-padding, 3x3, location row.
custom_imports = dict(imports=['posattack.probes'], allow_failed_imports=False)
default_scope = 'mmseg'

data_root = 'data/synthetic_cityscapes'
grid_size = 3
patch_size = 16  # pixels; each cell is one patch wide, as CIFAR images in the paper's grids
task = 'location'  # or 'classification': the label is the patch's majority class
padding = 'zero'  # 'zero' | 'reflect' | 'replicate', for every padded conv of the backbone
# Classes for the classification task: the synthetic generator paints sky like road, walls like
# buildings and terrain like sidewalk on purpose (see posattack/data/synthetic.py), so a crop alone
# cannot tell those apart; these six it can.
classification_classes = ['road', 'sidewalk', 'building', 'fence', 'vegetation', 'car']

model = dict(
    type='GAPNet',
    num_classes=grid_size * grid_size,
    padding=padding,
    data_preprocessor=dict(type='ImgDataPreprocessor'),  # the dataset already normalises
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        base_channels=16,  # stages give 16, 32, 64, 128 channels
        stem_channels=16,
        num_stages=4,
        out_indices=(3, ),
        strides=(1, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        contract_dilation=True))

train_dataset = dict(
    type='GridPatchDataset',
    grid_size=grid_size,
    patch_size=patch_size,
    task=task,
    cityscapes_root=data_root,
    split='train',
    crop_stride=8,  # overlapping crops: more distinct patches from few scenes
    max_patches_per_class=1500,  # road and building would swamp the rarer classes
    placements_per_patch=1,
    seed=0)
test_dataset = dict(
    type='GridPatchDataset',
    grid_size=grid_size,
    patch_size=patch_size,
    task=task,
    cityscapes_root=data_root,
    split='val',  # patches from scenes never seen in training
    crop_stride=8,
    max_patches_per_class=100,  # balanced: 600 test patches for the 6 classes
    placements_per_patch=1,
    max_patches=600,
    seed=1,
    test_mode=True)
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=train_dataset)
test_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=test_dataset)
test_evaluator = dict(type='ProbeAccuracy')

max_iters = 400
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-3, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=20, by_epoch=False),
    dict(type='CosineAnnealingLR', eta_min=1e-5, begin=20, end=max_iters, T_max=max_iters - 20,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, save_last=True,
                    max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
