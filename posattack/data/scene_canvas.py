"""Painting a synthetic scene: an RGB image, its labelIds and its instanceIds kept in step.

:class:`Canvas` paints the three maps together, so that they always agree; the noise and
colour helpers give the deliberately shared textures of :mod:`posattack.data.synthetic`.
"""
from __future__ import annotations

import cv2
import numpy as np

from .cityscapes_labels import ID_HAS_INSTANCES


class Canvas:
    """An RGB float image, its labelIds map and which object owns each pixel, painted
    together so that they always agree."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        # The painted object (tree, car, person...) each pixel belongs to, -1 for none:
        # instance ids follow from it, and a nearer object painted later occludes it.
        self.owner = np.full((height, width), -1, np.int32)
        self.current_object = -1

    def paint(self, mask: np.ndarray, label_id: int, colour) -> None:
        self.label[mask] = label_id
        self.rgb[mask] = colour
        self.owner[mask] = self.current_object

    def instance_ids(self) -> np.ndarray:
        """Cityscapes' `_instanceIds` (uint16): labelId * 1000 + the object's number among
        the visible objects of its class (0, 1, ... in painting order) for classes with
        instances (person, car, ...), the plain labelId everywhere else."""
        ids = self.label.astype(np.uint16)
        for label_id in np.unique(self.label):
            if not ID_HAS_INSTANCES[label_id]:
                continue
            of_class = self.label == label_id
            for number, owner in enumerate(np.unique(self.owner[of_class])):
                ids[of_class & (self.owner == owner)] = int(label_id) * 1000 + number
        return ids

    def paint_shape(self, draw, label_id: int, colour) -> None:
        """`draw(mask)` draws a filled OpenCV shape with value 1 into a blank uint8 mask."""
        mask = np.zeros((self.height, self.width), np.uint8)
        draw(mask)
        self.paint(mask.astype(bool), label_id, colour)


def noise_field(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    coarse = rng.uniform(-1, 1, (max(2, height // cell + 2), max(2, width // cell + 2)))
    return cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def grey_colour(rng: np.random.Generator, low: float, high: float, tint: float) -> np.ndarray:
    level = rng.uniform(low, high)
    return np.clip(level + rng.uniform(-tint, tint, 3), 0, 255).astype(np.float32)
