# The paper's own network (Islam et al., ICCV 2021): the authors' DeepLabv3-R50, output
# stride 16, zero padding, trained on Cityscapes, rebuilt in mmseg so that their checkpoint
# and their released channel rankings run through posattack unchanged.
#
#   python tools/model_converters/convert_authors_checkpoint.py \
#       zero_padding_best_deeplabv3_resnet50_cityscapes_os16.pth work_dirs/authors_os16.pth
#   python tools/attack.py configs/paper/deeplabv3_r50-os16_authors_cityscapes.py \
#       work_dirs/authors_os16.pth --ranking configs/paper/authors_rankings \
#       --ranking-format authors --num-channels 100 \
#       --cfg-options test_dataloader.dataset.data_root=data/cityscapes
#
# (docs/paper_model.md has all four commands).
#
# Their network is torchvision's: ResNet-50 with replace_stride_with_dilation=[False, False,
# True] and DeepLabHead with ASPP rates 6/12/18. mmseg's ResNet builds the same backbone:
#  - depth 50, deep_stem=False: the 7x7 stride-2 stem conv + BN + ReLU + 3x3 max-pool, with
#    torchvision's names (conv1, bn1, layer1..layer4; downsample.0/.1);
#  - style='pytorch': the stride sits on the 3x3 conv of a bottleneck (torchvision's v1.5);
#  - strides (1, 2, 2, 1) and dilations (1, 1, 1, 2): output stride 16, layer4 dilated;
#  - contract_dilation=True: torchvision gives the FIRST block of a dilated layer the
#    previous dilation (1) and the later blocks the new one (2); mmseg's ResLayer with
#    contract_dilation gives the first block dilation // 2 = 1 and the rest 2: the same
#    (tests/test_models/test_authors_checkpoint.py checks every conv's dilation and padding);
#  - zero padding (plain Conv2d), BatchNorm, no bias in the backbone's convolutions.
# out_indices=(0, 1, 2, 3) with in_index=3, as mmseg's R50 configs have it: the attacked
# tensor is then named 'backbone:3', the name the authors' rankings load under
# (posattack.channels.ranking.AUTHORS_LAYER); the head reads layer4's output only, and returning the
# other stages costs nothing (they are computed anyway).
#
# Inputs: BGR 0..255 images -> RGB, normalised by ImageNet mean/std on the 0..255 scale
# (0.485*255 = 123.675, ...), which equals their (x/255 - mean)/std on 0..1 images.
# Whole-image inference at 1024x2048 (mmseg's Cityscapes test pipeline), logits upsampled
# bilinearly with align_corners=False, as their code does.
_base_ = [
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/posattack/imports.py',
    '../_base_/posattack/region_metric.py',
]
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='ResNet',
        depth=50,
        in_channels=3,
        stem_channels=64,
        base_channels=64,
        num_stages=4,
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        out_indices=(0, 1, 2, 3),
        style='pytorch',
        deep_stem=False,
        avg_down=False,
        contract_dilation=True,
        norm_cfg=norm_cfg,
        norm_eval=False),
    decode_head=dict(
        type='TorchvisionDeepLabHead',
        in_channels=2048,
        in_index=3,
        channels=256,
        dilations=(6, 12, 18),
        project_dropout=0.1,
        dropout_ratio=0.0,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
test_evaluator = dict(_delete_=True, **_base_.region_metric)
val_evaluator = test_evaluator

# The authors' released rankings of this network's attacked tensor (backbone:3), shipped
# beside this config with their MIT notice (authors_rankings/LICENSE). tools/attack.py takes
# them as `--ranking configs/paper/authors_rankings --ranking-format authors`; a child config
# for mmseg's tools/test.py can name them in the removal hook: `ranking=authors_rankings,
# ranking_format='authors'` (configs/_base_/posattack/channel_removal.py).
authors_rankings = '{{ fileDirname }}/authors_rankings'
