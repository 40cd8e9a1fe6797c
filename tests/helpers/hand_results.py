"""A results dict built by hand (tests/test_report): three channel counts, targeted and random
settings with known means and standard deviations, per-class IoUs, regions and bands.
Every expected number in the report tests is worked out from these values."""
from __future__ import annotations

CLASSES = ['road', 'car', 'person']
REGIONS = ['full', 'left', 'right', 'center', 'periphery', 'band_0', 'band_1']


def make_setting(mode, num_channels, full, center, periphery, seed=None, attack_region=None,
                 road=None, car=None, person=None):
    """A setting; left/right copy full, band_0 = periphery - 5, band_1 = center - 3."""
    metrics = {'mIoU': full, 'aAcc': full + 20, 'mAcc': full + 5, 'full.mIoU': full,
               'left.mIoU': full, 'right.mIoU': full, 'center.mIoU': center,
               'periphery.mIoU': periphery, 'band_0.mIoU': periphery - 5,
               'band_1.mIoU': center - 3, 'periphery_minus_center.mIoU': periphery - center}
    per_class = {region: {name: {'IoU': None, 'Acc': None} for name in CLASSES}
                 for region in REGIONS}
    per_class['full'] = {'road': {'IoU': road, 'Acc': None if road is None else road + 1},
                         'car': {'IoU': car, 'Acc': None if car is None else car + 1},
                         'person': {'IoU': person, 'Acc': None if person is None else person + 1}}
    return {'mode': mode, 'num_channels': num_channels, 'fraction': None, 'seed': seed,
            'attack_region': attack_region, 'metrics': metrics, 'per_class': per_class}


def hand_results_dict() -> dict:
    """A fresh copy each call (the tests edit it): the ``hand_results`` fixture's value."""
    settings = [
        make_setting('clean', 0, 70, 75, 60, road=90, car=80, person=None),
        # N=10: targeted 50 vs random 66/68/70 (mean 68, sample std 2): 18 points = 9 std.
        make_setting('targeted', 10, 50, 65, 35, attack_region='overall',
                     road=70, car=50, person=5),
        make_setting('random', 10, 66, 74, 58, seed=0, road=88, car=78, person=10),
        make_setting('random', 10, 68, 74, 57, seed=1, road=86, car=76, person=None),
        make_setting('random', 10, 70, 71, 56, seed=2, road=84, car=77, person=20),
        # N=20: targeted 58 vs random 60/64/68 (mean 64, std 4): 6 points = 1.5 std.
        make_setting('targeted', 20, 58, 70, 50, attack_region='overall',
                     road=80, car=70, person=1),
        make_setting('random', 20, 60, 70, 50, seed=0, road=80, car=70, person=1),
        make_setting('random', 20, 64, 70, 50, seed=1, road=80, car=70, person=1),
        make_setting('random', 20, 68, 70, 50, seed=2, road=80, car=70, person=1),
        # N=30: a single random seed, so no std.
        make_setting('targeted', 30, 40, 60, 30, attack_region='overall',
                     road=60, car=40, person=0),
        make_setting('random', 30, 65, 70, 55, seed=0, road=80, car=70, person=1),
    ]
    return {'config': 'configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py',
            'checkpoint': 'work_dirs/demo/iter_300.pth', 'layer': 'backbone:3', 'num_images': 8,
            'num_channels_total': 128, 'class_names': CLASSES, 'regions': REGIONS,
            'settings': settings}
