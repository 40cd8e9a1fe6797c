# Per-region mIoU as the paper scores it (full image, left/right halves, center vs periphery)
# plus four border-distance bands, for mmseg's own tools/test.py. The type is posattack's
# top-level name, `posattack.RegionIoUMetric`, which MMEngine's registry imports by itself
# (imports.py is not required, but harmless) and which stays put when modules move.
#
# Why a variable and not `test_evaluator = ...`: every mmseg zoo config already defines
# val_evaluator and test_evaluator, and MMEngine refuses a key defined by two `_base_` files.
# So this fragment names the metric, and the child config (which may override base keys)
# puts it in place; `_delete_=True` drops the IoUMetric fields instead of merging into them:
#
#   _base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py',
#             'posattack::_base_/posattack/imports.py',
#             'posattack::_base_/posattack/region_metric.py']
#   test_evaluator = dict(_delete_=True, **_base_.region_metric)
#   val_evaluator = test_evaluator
#
# Other regions from the command line, by type name with default arguments (DictAction
# cannot parse dicts; write `dict(type='grid', rows=5, cols=5)` specs in a config):
#   --cfg-options test_evaluator.regions=[paper,grid]
# `out_file='region_miou.json'` also writes every region's scores, per class, as JSON.
# mmseg's tools/test.py --out sets `keep_results`; RegionIoUMetric accepts it, as IoUMetric does.
region_metric = dict(
    type='posattack.RegionIoUMetric',
    regions=['paper', dict(type='border', bands=4)],
    iou_metrics=['mIoU'])
