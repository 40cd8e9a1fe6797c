# The position attack on mmseg's FCN-HRNetV2-W18 for Cityscapes: a backbone without a last
# stage to attack alone. HRNet keeps four resolutions to the end and the FCN head reads all
# four (resized and concatenated, in_index=(0, 1, 2, 3)), so the default attacked tensor is
# the deepest (lowest-resolution) branch, `backbone:3` (144 channels), and tools/depth_profile.py
# profiles every branch.
#
#   python tools/attack.py configs/paper/fcn_hr18_cityscapes-512x1024_posattack.py \
#       fcn_hr18_512x1024_80k_cityscapes_20200601_223255-4e7b345e.pth \
#       --cfg-options test_dataloader.dataset.data_root=data/cityscapes
#
# Weights (zoo mIoU 79.58):
#   https://download.openmmlab.com/mmsegmentation/v0.5/hrnet/fcn_hr18_512x1024_80k_cityscapes/fcn_hr18_512x1024_80k_cityscapes_20200601_223255-4e7b345e.pth
#
# SyncBN runs as BatchNorm on CPU.
_base_ = [
    'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py',
    '../_base_/posattack/imports.py',
    '../_base_/posattack/region_metric.py',
]
test_evaluator = dict(_delete_=True, **_base_.region_metric)
val_evaluator = test_evaluator
