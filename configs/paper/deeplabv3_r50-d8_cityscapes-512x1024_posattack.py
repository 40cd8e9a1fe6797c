# The paper's experiment (Islam et al., ICCV 2021) on mmseg's DeepLabv3-R50 for Cityscapes:
# the position attack removes channels of the backbone's last stage (2048 channels, the
# tensor the ASPP head reads) and scores mIoU over the full image, left/right halves, the
# center, the periphery and four border-distance bands.
#
#   python tools/attack.py configs/paper/deeplabv3_r50-d8_cityscapes-512x1024_posattack.py \
#       deeplabv3_r50-d8_512x1024_80k_cityscapes_20200606_113404-b92cfdd4.pth \
#       --cfg-options test_dataloader.dataset.data_root=data/cityscapes
#
# or with mmseg's own tools/test.py (RegionIoUMetric as the evaluator; add
# configs/_base_/posattack/channel_removal.py in a child config to remove channels there).
#
# Weights (zoo mIoU 79.32):
#   https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r50-d8_512x1024_80k_cityscapes/deeplabv3_r50-d8_512x1024_80k_cityscapes_20200606_113404-b92cfdd4.pth
#
# Not the paper's network: the paper's DeepLabv3-R50 has output stride 16, mmseg's
# R50-D8 has output stride 8 (dilated stages 3 and 4). mmseg ships no R50-D16 Cityscapes
# model; the stride-16 layout would be backbone strides (1, 2, 2, 1), dilations (1, 1, 1, 2)
# and ASPP dilations (1, 6, 12, 18) (as deeplabv3_r101-d16-mg124), trained by yourself.
# The authors' released rankings (configs/paper/authors_rankings/*.json) index the channels
# of *their* checkpoint only: with any other weights, identify the channels anew (the default).
#
# SyncBN in the zoo config becomes plain BatchNorm on CPU (posattack.models.builder.load_segmentor),
# with the same weights. The auxiliary FCN head stays: zoo checkpoints carry its weights,
# and test-time inference never runs it.
_base_ = [
    'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/posattack/imports.py',
    '../_base_/posattack/region_metric.py',
]
test_evaluator = dict(_delete_=True, **_base_.region_metric)
val_evaluator = test_evaluator
