# Import posattack when MMEngine builds anything from this config: its metric
# (RegionIoUMetric), hook (ChannelRemovalHook), model pieces, and the checkpoint allowlist
# that lets MMEngine checkpoints load under torch >= 2.6, for mmseg's own tools/test.py too.
#
#   _base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py',
#             'posattack::_base_/posattack/imports.py']
#
# MMEngine refuses a key defined by two `_base_` files: if another base of yours already
# sets `custom_imports` (the demo configs do), leave this file out and add 'posattack' to
# that list. region_metric.py and channel_removal.py name their types by top-level path, so
# they also work without this file; it makes the import happen first, before any checkpoint
# loads.
custom_imports = dict(imports=['posattack'], allow_failed_imports=False)
