"""Which images resample together: the unit of the image bootstrap.

Cityscapes images are not independent: frames of one city (one drive, one season, one
camera) share more than frames of two cities. Resampling images as if independent then
makes intervals too narrow. ``--bootstrap-groups city`` resamples cities instead (a cluster
bootstrap: draw as many groups as there are, with replacement, and take every image of each
drawn group); a regular expression with one capture group names any other grouping.

Usage::

    groups = image_groups(counts.images, 'city')      # ['aachen', 'aachen', 'bochum', ...]
    weights = bootstrap_weights(len(groups), 2000, seed=0, groups=groups)
"""
from __future__ import annotations

import os.path as osp
import re
from collections.abc import Sequence
from typing import Optional

import numpy as np

from .per_image import resample_weights

# Cityscapes names every image <city>_<sequence>_<frame>_<suffix>.png.
CITY_PATTERN = r'^([^_/]+)_\d+_\d+_'


def image_groups(images: Sequence[str], spec: Optional[str]) -> Optional[list[str]]:
    """One group label per image from ``spec`` ('city' or a regex with one capture group
    matched against the file name); None for ``spec`` None (images independent)."""
    if spec is None:
        return None
    pattern = CITY_PATTERN if spec == 'city' else spec
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f'--bootstrap-groups {spec!r} is not a regular expression ({error}); '
                         "use 'city' or a pattern with one capture group.") from None
    if compiled.groups != 1:
        raise ValueError(f'--bootstrap-groups {spec!r} needs exactly one capture group '
                         r"(e.g. '^([a-z]+)_'), or 'city'.")
    labels = []
    for image in images:
        match = compiled.search(osp.basename(image))
        if match is None:
            raise ValueError(f'--bootstrap-groups {spec!r} does not match image '
                             f'{osp.basename(image)!r}; give a pattern every file name matches.')
        labels.append(match.group(1))
    return labels


def bootstrap_weights(num_images: int, num_resamples: int, seed: int,
                      groups: Optional[Sequence[str]] = None) -> np.ndarray:
    """(B, n) image multiplicities: iid images, or whole groups drawn with replacement."""
    if groups is None:
        return resample_weights(num_images, num_resamples, seed)
    if len(groups) != num_images:
        raise ValueError(f'{len(groups)} group labels for {num_images} images.')
    names = sorted(set(groups))
    index = np.array([names.index(g) for g in groups])
    group_weights = resample_weights(len(names), num_resamples, seed)   # (B, G)
    return group_weights[:, index]
