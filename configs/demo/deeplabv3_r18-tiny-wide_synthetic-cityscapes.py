# The embedded default with its last backbone stage twice as wide (256 channels instead of
# 128; the other stages, the head's width, the data and the 600 iterations unchanged), one
# of the settings of the seed-robustness study (docs/seed_robustness.md): does a wider
# attacked tensor carry the position effect more consistently across training seeds? The
# attack still removes 10% of this tensor's channels (26 of 256).
_base_ = ['./deeplabv3_r18-tiny_synthetic-cityscapes.py']

model = dict(
    backbone=dict(type='ResNetV1cWideLastStage', last_stage_widen=2),
    decode_head=dict(in_channels=256))
