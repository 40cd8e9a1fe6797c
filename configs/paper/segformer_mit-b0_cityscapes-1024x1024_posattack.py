# The position attack on mmseg's SegFormer (MiT-B0) for Cityscapes: a transformer backbone
# without positional embeddings (position can only come from its zero-padded convolutions)
# and a head that reads all four backbone stages.
#
#   python tools/attack.py configs/paper/segformer_mit-b0_cityscapes-1024x1024_posattack.py \
#       segformer_mit-b0_8x1_1024x1024_160k_cityscapes_20211208_101857-e7f88502.pth \
#       --cfg-options test_dataloader.dataset.data_root=data/cityscapes
#
# Weights (zoo mIoU 76.54, sliding window):
#   https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b0_8x1_1024x1024_160k_cityscapes/segformer_mit-b0_8x1_1024x1024_160k_cityscapes_20211208_101857-e7f88502.pth
#
# Which tensor: the head consumes backbone outputs 0..3 (32, 64, 160, 256 channels); the
# attack defaults to the deepest, 'backbone:3' (256 channels). Pick another with
# --layer backbone:2 (tools/attack.py) or layer='backbone:2' (ChannelRemovalHook).
#
# Whole-image inference, unlike the zoo's sliding 1024x1024 window: with a sliding window
# every crop is a separate input, so "position in the network's input" is no longer
# position in the image, which is what the paper measures; whole-image inference also lets
# the attack run the backbone once per batch instead of once per setting. For the zoo's
# protocol: --cfg-options model.test_cfg.mode=slide (crop_size and stride are kept below).
_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
    '../_base_/posattack/imports.py',
    '../_base_/posattack/region_metric.py',
]
model = dict(test_cfg=dict(mode='whole'))
test_evaluator = dict(_delete_=True, **_base_.region_metric)
val_evaluator = test_evaluator
