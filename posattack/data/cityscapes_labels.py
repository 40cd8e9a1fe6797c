"""The official Cityscapes label table (cityscapesScripts, helpers/labels.py).

Every annotation PNG the synthetic generator writes is derived from this one table, so the
three encodings (`_labelIds`, `_labelTrainIds`, `_color`) agree pixel for pixel, exactly as
they do in the real dataset.

    from posattack.data.cityscapes_labels import ID_TO_TRAINID, TRAINID_TO_NAME
    train_ids = ID_TO_TRAINID[label_ids]          # (H, W) uint8 -> values in 0..18 or 255
    print(TRAINID_TO_NAME[13])                    # 'car'
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

Label = namedtuple(
    'Label',
    ['name', 'id', 'trainId', 'category', 'categoryId', 'hasInstances', 'ignoreInEval', 'color'])

# Copied value for value from cityscapesScripts (MIT licence). trainId 255 = ignored in eval.
LABELS = (
    Label('unlabeled',             0, 255, 'void',         0, False, True,  (0, 0, 0)),
    Label('ego vehicle',           1, 255, 'void',         0, False, True,  (0, 0, 0)),
    Label('rectification border',  2, 255, 'void',         0, False, True,  (0, 0, 0)),
    Label('out of roi',            3, 255, 'void',         0, False, True,  (0, 0, 0)),
    Label('static',                4, 255, 'void',         0, False, True,  (0, 0, 0)),
    Label('dynamic',               5, 255, 'void',         0, False, True,  (111, 74, 0)),
    Label('ground',                6, 255, 'void',         0, False, True,  (81, 0, 81)),
    Label('road',                  7,   0, 'flat',         1, False, False, (128, 64, 128)),
    Label('sidewalk',              8,   1, 'flat',         1, False, False, (244, 35, 232)),
    Label('parking',               9, 255, 'flat',         1, False, True,  (250, 170, 160)),
    Label('rail track',           10, 255, 'flat',         1, False, True,  (230, 150, 140)),
    Label('building',             11,   2, 'construction', 2, False, False, (70, 70, 70)),
    Label('wall',                 12,   3, 'construction', 2, False, False, (102, 102, 156)),
    Label('fence',                13,   4, 'construction', 2, False, False, (190, 153, 153)),
    Label('guard rail',           14, 255, 'construction', 2, False, True,  (180, 165, 180)),
    Label('bridge',               15, 255, 'construction', 2, False, True,  (150, 100, 100)),
    Label('tunnel',               16, 255, 'construction', 2, False, True,  (150, 120, 90)),
    Label('pole',                 17,   5, 'object',       3, False, False, (153, 153, 153)),
    Label('polegroup',            18, 255, 'object',       3, False, True,  (153, 153, 153)),
    Label('traffic light',        19,   6, 'object',       3, False, False, (250, 170, 30)),
    Label('traffic sign',         20,   7, 'object',       3, False, False, (220, 220, 0)),
    Label('vegetation',           21,   8, 'nature',       4, False, False, (107, 142, 35)),
    Label('terrain',              22,   9, 'nature',       4, False, False, (152, 251, 152)),
    Label('sky',                  23,  10, 'sky',          5, False, False, (70, 130, 180)),
    Label('person',               24,  11, 'human',        6, True,  False, (220, 20, 60)),
    Label('rider',                25,  12, 'human',        6, True,  False, (255, 0, 0)),
    Label('car',                  26,  13, 'vehicle',      7, True,  False, (0, 0, 142)),
    Label('truck',                27,  14, 'vehicle',      7, True,  False, (0, 0, 70)),
    Label('bus',                  28,  15, 'vehicle',      7, True,  False, (0, 60, 100)),
    Label('caravan',              29, 255, 'vehicle',      7, True,  True,  (0, 0, 90)),
    Label('trailer',              30, 255, 'vehicle',      7, True,  True,  (0, 0, 110)),
    Label('train',                31,  16, 'vehicle',      7, True,  False, (0, 80, 100)),
    Label('motorcycle',           32,  17, 'vehicle',      7, True,  False, (0, 0, 230)),
    Label('bicycle',              33,  18, 'vehicle',      7, True,  False, (119, 11, 32)),
    Label('license plate',        -1,  -1, 'vehicle',      7, False, True,  (0, 0, 142)),
)

NAME_TO_LABEL = {label.name: label for label in LABELS}
NAME_TO_ID = {label.name: label.id for label in LABELS}
NUM_TRAIN_CLASSES = 19
IGNORE_INDEX = 255

# Lookup tables indexed by a labelId (0..255). Ids the table does not define map to 255 /
# black, like cityscapesScripts' own conversion does for unknown ids.
ID_TO_TRAINID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
ID_TO_COLOR = np.zeros((256, 3), dtype=np.uint8)
# Classes whose objects are counted one by one in `_instanceIds` (person, car, ...).
ID_HAS_INSTANCES = np.zeros(256, dtype=bool)
for _label in LABELS:
    if _label.id >= 0:
        ID_TO_TRAINID[_label.id] = _label.trainId if _label.trainId >= 0 else IGNORE_INDEX
        ID_TO_COLOR[_label.id] = _label.color
        ID_HAS_INSTANCES[_label.id] = _label.hasInstances
del _label

# The 19 evaluated classes in trainId order: the order of mmseg's CityscapesDataset.METAINFO.
TRAIN_LABELS = tuple(
    sorted((label for label in LABELS if 0 <= label.trainId < IGNORE_INDEX),
           key=lambda label: label.trainId))
TRAINID_TO_NAME = tuple(label.name for label in TRAIN_LABELS)
TRAINID_PALETTE = tuple(label.color for label in TRAIN_LABELS)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelIds image to trainIds (uint8, 255 for ignored ids)."""
    return ID_TO_TRAINID[np.asarray(label_ids, dtype=np.uint8)]


def label_ids_to_color(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelIds image to the official RGB colours, shape (H, W, 3) uint8."""
    return ID_TO_COLOR[np.asarray(label_ids, dtype=np.uint8)]
