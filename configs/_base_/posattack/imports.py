# Import posattack when MMEngine builds anything from this config: its metric
# (RegionIoUMetric), hook (ChannelRemovalHook) and the checkpoint allowlist that lets
# MMEngine checkpoints load under torch >= 2.6 become available to mmseg's own tools.
#
#   _base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py',
#             '<posattack>/configs/_base_/posattack/imports.py']
#
# MMEngine refuses a key defined by two `_base_` files: do not combine this file with
# another base that sets `custom_imports` (channel_removal.py and the demo config do);
# in that case that base already imports posattack, so leave this one out.
custom_imports = dict(imports=['posattack'], allow_failed_imports=False)
