# The position attack on mmseg's PSPNet-R50-D8 for Cityscapes: the attacked tensor is the
# backbone's last stage (2048 channels), the one the pyramid pooling head reads.
#
#   python tools/attack.py configs/paper/pspnet_r50-d8_cityscapes-512x1024_posattack.py \
#       pspnet_r50-d8_512x1024_80k_cityscapes_20200606_112131-2376f12b.pth \
#       --cfg-options test_dataloader.dataset.data_root=data/cityscapes
#
# Weights (zoo mIoU 78.55):
#   https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r50-d8_512x1024_80k_cityscapes/pspnet_r50-d8_512x1024_80k_cityscapes_20200606_112131-2376f12b.pth
#
# A second architecture on the paper's backbone: PSPNet pools the attacked tensor at four
# scales (1, 2, 3, 6) before its convolutions, so global pooling, the paper's subject, sits
# right in the head. Output stride 8, like mmseg's DeepLabv3-R50-D8 (the paper used 16).
# SyncBN runs as BatchNorm on CPU; the auxiliary head is kept (its weights are in the
# checkpoint, inference never runs it).
_base_ = [
    'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/posattack/imports.py',
    '../_base_/posattack/region_metric.py',
]
test_evaluator = dict(_delete_=True, **_base_.region_metric)
val_evaluator = test_evaluator
