"""The objects of a synthetic street scene, painted in perspective: trees, poles with traffic
signs and lights, lamps, persons, cars and litter bins (static clutter, void in Cityscapes).

Each object is a few frontal rectangles and ellipses standing on the ground at a lateral
offset and depth (metres), scaled by the pinhole geometry of the scene that mixes this in
(``pixels_per_metre``, ``ground_row``, ``column``): things shrink toward the horizon, as
they do in Cityscapes. Every object's pixels are owned by its own number, so instance ids
follow (``Canvas.instance_ids``).
"""
from __future__ import annotations

import cv2
import numpy as np

from .cityscapes_labels import NAME_TO_ID
from .scene_canvas import grey_colour

POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION = (NAME_TO_ID[n] for n in (
    'pole', 'traffic light', 'traffic sign', 'vegetation'))
PERSON, CAR, STATIC = (NAME_TO_ID[n] for n in ('person', 'car', 'static'))


class ObjectPainter:
    """Mixed into the scene sampler, which provides ``rng``, ``canvas``, ``width``,
    ``height`` and the geometry (``pixels_per_metre``, ``ground_row``, ``column``)."""

    def _box(self, lateral: float, depth: float, width_m: float, bottom_m: float,
             top_m: float) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1) of a frontal rectangle standing at (lateral, depth)."""
        ppm = self.pixels_per_metre(depth)
        ground = self.ground_row(depth)
        x_centre = self.column(lateral, depth)
        half = max(0.5, width_m * ppm / 2)
        return (int(round(x_centre - half)), int(round(ground - top_m * ppm)),
                int(round(x_centre + half)) - 1, int(round(ground - bottom_m * ppm)) - 1)

    def _rectangle(self, box, label_id, colour) -> None:
        x0, y0, x1, y1 = box  # inclusive corners, possibly outside the image
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.width - 1), min(y1, self.height - 1)
        if x1 < x0 or y1 < y0:
            return
        self.canvas.label[y0:y1 + 1, x0:x1 + 1] = label_id
        self.canvas.rgb[y0:y1 + 1, x0:x1 + 1] = colour
        self.canvas.owner[y0:y1 + 1, x0:x1 + 1] = self.canvas.current_object

    def _ellipse(self, centre, axes, label_id, colour) -> None:
        centre = tuple(int(round(v)) for v in centre)
        axes = tuple(max(1, int(round(v))) for v in axes)
        self.canvas.paint_shape(lambda m: cv2.ellipse(m, centre, axes, 0, 0, 360, 1, -1),
                                label_id, colour)

    def paint_object(self, depth: float, kind: str, lateral: float) -> None:
        """One object; its pixels are owned by a new object number (see instance_ids)."""
        self.canvas.current_object += 1
        self._paint_object_parts(depth, kind, lateral)

    def _paint_object_parts(self, depth: float, kind: str, lateral: float) -> None:
        rng, ppm = self.rng, self.pixels_per_metre(depth)
        if kind == 'tree':
            trunk_height = rng.uniform(2.0, 3.5)
            crown = rng.uniform(1.4, 2.8)
            green = np.array([rng.uniform(40, 90), rng.uniform(90, 150), rng.uniform(20, 60)])
            self._rectangle(self._box(lateral, depth, 0.35, 0, trunk_height + crown * 0.3),
                            VEGETATION, (90, 70, 50))
            centre = (self.column(lateral, depth),
                      self.ground_row(depth) - (trunk_height + crown * 0.8) * ppm)
            self._ellipse(centre, (crown * ppm, crown * 0.9 * ppm), VEGETATION, green)
        elif kind in ('sign', 'light', 'lamp'):
            # Signs and lights hang at 2.5-3.5 m, where a driver sees them; lamps are taller.
            pole_height = rng.uniform(5.0, 7.0) if kind == 'lamp' else rng.uniform(2.4, 3.3)
            self._rectangle(self._box(lateral, depth, 0.25, 0, pole_height), POLE,
                            grey_colour(rng, 100, 150, 5))
            if kind == 'sign':
                face = [(230, 200, 30), (235, 235, 235), (40, 80, 200), (200, 40, 40)][
                    rng.integers(4)]
                self._rectangle(self._box(lateral, depth, 0.9, pole_height - 0.2,
                                          pole_height + 0.7), TRAFFIC_SIGN, face)
            elif kind == 'light':
                self._rectangle(self._box(lateral, depth, 0.7, pole_height - 0.2,
                                          pole_height + 1.2), TRAFFIC_LIGHT, (35, 35, 30))
                lamp = [(230, 40, 30), (240, 180, 30), (40, 220, 90)][rng.integers(3)]
                self._rectangle(self._box(lateral, depth, 0.3, pole_height + 0.2,
                                          pole_height + 0.5), TRAFFIC_LIGHT, lamp)
        elif kind == 'person':
            height = rng.uniform(1.55, 1.95)
            shirt = rng.uniform(30, 230, 3)
            trousers = rng.uniform(20, 90, 3)
            self._rectangle(self._box(lateral, depth, 0.4, 0, height * 0.5), PERSON, trousers)
            self._rectangle(self._box(lateral, depth, 0.55, height * 0.48, height * 0.85),
                            PERSON, shirt)
            head = 0.11 * height * ppm
            self._ellipse((self.column(lateral, depth),
                           self.ground_row(depth) - height * 0.92 * ppm), (head, head * 1.2),
                          PERSON, (205, 160, 130))
        elif kind == 'car':
            body = np.array([rng.uniform(10, 200), rng.uniform(10, 200), rng.uniform(10, 200)])
            self._rectangle(self._box(lateral, depth, 1.8, 0.15, 0.95), CAR, body)
            self._rectangle(self._box(lateral, depth, 1.5, 0.95, 1.5), CAR, body * 0.9)
            self._rectangle(self._box(lateral, depth, 1.3, 1.0, 1.4), CAR, (40, 45, 55))
            for wheel in (-0.65, 0.65):
                self._rectangle(self._box(lateral + wheel, depth, 0.35, 0, 0.35), CAR,
                                (20, 20, 20))
        elif kind == 'bin':
            self._rectangle(self._box(lateral, depth, 0.5, 0, 0.9), STATIC, (60, 80, 60))
