"""The classes the default scenes never draw: truck, bus, train (a tram), bicycle and
motorcycle with their riders, and a parked bicycle, for scenes with all 19 Cityscapes train
classes (``generate_cityscapes(..., all_classes=True)``; a sign, a traffic light, a fence, a near
person and a near car, which the default draws at random, are then always there too).

Each vehicle takes its own place, so that none hides another: the truck comes in the oncoming
lane and the bus waits at a stop by the right curb, both near; the tram runs far away down
the middle of the street, seen between them; a cyclist rides on the right verge, a
motorcyclist near the left curb in front of the truck, and a bicycle stands on the left
verge. Everything is a few frontal rectangles and ellipses standing on the ground, like the
default objects (:mod:`posattack.data.scene_objects`), painted far to near with them.
"""
from __future__ import annotations

from .cityscapes_labels import NAME_TO_ID

RIDER, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = (NAME_TO_ID[n] for n in (
    'rider', 'truck', 'bus', 'train', 'motorcycle', 'bicycle'))

RARE_KINDS = ('truck', 'bus', 'tram', 'cyclist', 'motorcyclist', 'bicycle')


class VehiclePainter:
    """Mixed into the scene sampler next to ``ObjectPainter`` (its ``_box``, ``_rectangle``,
    ``_ellipse``, ``rng`` and geometry)."""

    def sample_rare_objects(self) -> list[tuple[float, str, float]]:
        """(depth, kind, lateral) of one object of each rare class, at places where the
        others leave it visible (see the module docstring)."""
        rng = self.rng
        return [
            (rng.uniform(14, 20), 'truck', -rng.uniform(1.6, 2.0)),
            (rng.uniform(14, 20), 'bus', self.road_right - 1.3),   # at a stop by the curb
            (rng.uniform(38, 50), 'tram', rng.uniform(-0.3, 0.3)),
            (rng.uniform(8, 13), 'cyclist', self.road_right + rng.uniform(0.6, 1.2)),
            (rng.uniform(7, 9), 'motorcyclist', self.road_left + rng.uniform(0.5, 0.8)),
            (rng.uniform(10, 12), 'bicycle', self.road_left - 1.2),
            # street furniture the default draws only at random (scene_objects.py paints it)
            (rng.uniform(9, 14), 'sign', self.road_right + 0.35),
            (rng.uniform(9, 14), 'light', self.road_left - 0.35),
            # a person on the left verge and a car ahead in the lane, where nothing hides them
            # (near objects far to the side would fall outside the image)
            (rng.uniform(13, 16), 'person', self.road_left - 0.5),
            (rng.uniform(25, 35), 'car', rng.uniform(0.8, 1.0)),
        ]

    def paint_rare_object(self, depth: float, kind: str, lateral: float) -> None:
        rng = self.rng
        if kind in ('truck', 'bus', 'tram'):
            label = {'truck': TRUCK, 'bus': BUS, 'tram': TRAIN}[kind]
            width, top = {'truck': (2.5, 3.6), 'bus': (2.55, 3.1), 'tram': (2.65, 3.5)}[kind]
            body = rng.uniform(40, 230, 3)
            self._rectangle(self._box(lateral, depth, width, 0.3, top), label, body)
            # windows: a dark band across the upper half (the truck's cab only)
            window_width = 1.2 if kind == 'truck' else width * 0.9
            self._rectangle(self._box(lateral, depth, window_width, top * 0.55, top * 0.85),
                            label, (35, 40, 50))
            for wheel in (-0.4, 0.4):
                self._rectangle(self._box(lateral + wheel * width, depth, 0.4, 0, 0.45),
                                label, (20, 20, 20))
        elif kind in ('cyclist', 'motorcyclist', 'bicycle'):
            label = MOTORCYCLE if kind == 'motorcyclist' else BICYCLE
            radius = 0.33 if label == BICYCLE else 0.4
            frame = rng.uniform(30, 200, 3)
            ppm = self.pixels_per_metre(depth)
            ground = self.ground_row(depth)
            for wheel in (-0.55, 0.55):  # seen from the side: two wheels and a frame
                self._ellipse((self.column(lateral + wheel, depth), ground - radius * ppm),
                              (radius * ppm, radius * ppm), label, (25, 25, 25))
            body_top = 0.9 if label == BICYCLE else 1.0
            self._rectangle(self._box(lateral, depth, 1.0, radius * 0.8, body_top), label,
                            frame)
            if kind != 'bicycle':
                self._paint_rider(depth, lateral, body_top)

    def _paint_rider(self, depth: float, lateral: float, seat: float) -> None:
        rng, ppm = self.rng, self.pixels_per_metre(depth)
        height = rng.uniform(0.75, 0.9)  # sitting: seat to the top of the head
        self._rectangle(self._box(lateral, depth, 0.5, seat - 0.1, seat + height * 0.75),
                        RIDER, rng.uniform(30, 230, 3))
        head = 0.11 * ppm
        self._ellipse((self.column(lateral, depth),
                       self.ground_row(depth) - (seat + height * 0.88) * ppm), (head, head * 1.2),
                      RIDER, (205, 160, 130))
