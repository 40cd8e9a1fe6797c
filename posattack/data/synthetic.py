"""Synthetic street scenes written in the real Cityscapes layout.

The scenes follow Cityscapes' structure: sky on top, a two-lane road below the horizon with
right-hand traffic (cars ahead on the right lane, oncoming ones on the left), verges on both
sides, a row of facades behind each verge, trees, poles carrying traffic signs and lights,
fences, cars and persons, all in perspective (things shrink toward the horizon). A void
ego-vehicle bonnet and static clutter give ignored pixels.

Appearance is deliberately ambiguous, so that a network has to use *where* a pixel is:
  * sky and road share one colour and texture: told apart only vertically;
  * the right verge is sidewalk and the left one terrain, the right facades are buildings
    and the left ones walls. Each pair shares one colour, one texture and one layout
    distribution: told apart only by the side of the image.
Everything else is drawn alike on both sides (only the walls leave wider gaps than the
buildings), so a mirrored scene is nearly as likely as the scene itself, but with the labels
of those pairs swapped. A network can label them only by knowing left from right (absolute
position, which CNNs take from zero padding), and the channels that carry it are those whose
pooled response changes under a horizontal flip: what the flip difference of Islam et al.
(ICCV 2021) looks for.

    from posattack.data.synthetic import generate_cityscapes
    info = generate_cityscapes('data/synthetic_cityscapes', num_train=300, num_val=60)
    print(info['classes_present']['val'])
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from ..utils.fileio import write_image_atomic, write_json_atomic
from .cityscapes_labels import ID_TO_COLOR, ID_TO_TRAINID, IGNORE_INDEX, NAME_TO_ID, TRAINID_TO_NAME
from .cityscapes_layout import (CITIES, FRAME_NUMBER, MARKER_FILE, MIN_SIZE,  # noqa: F401
                                SPLIT_CODES, check_arguments, cityscapes_stem, prepare_output_dir)
from .scene_canvas import Canvas, grey_colour, noise_field
from .scene_objects import ObjectPainter
from .scene_vehicles import RARE_KINDS, VehiclePainter

ROAD, SIDEWALK, BUILDING, WALL, FENCE = (NAME_TO_ID[n] for n in (
    'road', 'sidewalk', 'building', 'wall', 'fence'))
TERRAIN, SKY, EGO_VEHICLE = (NAME_TO_ID[n] for n in ('terrain', 'sky', 'ego vehicle'))

CAMERA_HEIGHT = 1.4  # metres; a pixel row d below the horizon sees the ground d/1.4 px per m


class _SceneSampler(ObjectPainter, VehiclePainter):
    """Draws one street scene. Geometry is a pinhole camera at CAMERA_HEIGHT above a flat
    ground: a ground point at lateral offset X (metres, right positive) seen on the pixel row
    d = y - horizon lies at column x = vanishing_x + X * d / CAMERA_HEIGHT."""

    def __init__(self, rng: np.random.Generator, height: int, width: int,
                 side_free: bool = False, all_classes: bool = False):
        self.rng, self.height, self.width = rng, height, width
        self.side_free = side_free
        self.all_classes = all_classes
        self.canvas = Canvas(height, width)
        self.horizon = height * rng.uniform(0.36, 0.46)
        self.vanishing_x = width * rng.uniform(0.45, 0.55)
        self.focal = float(width)  # pixels; depth Z = focal * CAMERA_HEIGHT / d
        # Lateral extents (metres from the camera; left negative). Both sides are drawn from
        # the same distributions: only the labels tell the sides apart.
        self.road_left = -rng.uniform(3.0, 4.5)
        self.road_right = rng.uniform(3.0, 4.5)
        self.facade_right = self.road_right + rng.uniform(2.5, 4.0)  # sidewalk in between
        self.facade_left = self.road_left - rng.uniform(2.5, 4.0)  # terrain in between
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self.xs, self.ys = xs + 0.5, ys + 0.5
        self.row_below_horizon = self.ys - self.horizon
        # Shared looks: the ambiguity the network must resolve by position.
        self.sky_road_colour = grey_colour(rng, 95, 175, 12)
        self.verge_colour = self._verge_colour()
        self.texture = noise_field(rng, height, width, max(2, width // 32))
        self.grain = rng.normal(0, 1, (height, width)).astype(np.float32)
        self.plaster = noise_field(rng, height, width, max(2, width // 64))
        if side_free:
            # Drawn after everything above, so that the default scenes keep their bytes.
            self._draw_side_free_layout()

    def _draw_side_free_layout(self) -> None:
        """Side-free scenes: each side's verge is sidewalk or terrain, each side's facades
        buildings or walls, at random and independently, and each class has its own look
        (paving vs grass tones; tall buildings vs low walls). Classes then follow from
        appearance, not from the side, so a horizontally flipped scene is as likely as the
        scene with its labels flipped along: a random flip in training is label-preserving,
        as it is on real Cityscapes."""
        rng = self.rng
        self.verge_classes = {side: SIDEWALK if rng.random() < 0.5 else TERRAIN
                              for side in (1, -1)}
        self.facade_classes = {side: BUILDING if rng.random() < 0.5 else WALL
                               for side in (1, -1)}
        self.verge_colours = {SIDEWALK: self._verge_colour(), TERRAIN: self._terrain_colour()}

    def _terrain_colour(self) -> np.ndarray:
        # Grass and bare soil: greener than the paving, apart from the sky-and-road grey.
        while True:
            colour = np.array([self.rng.uniform(70, 130), self.rng.uniform(110, 170),
                               self.rng.uniform(40, 90)], np.float32)
            if np.abs(colour - self.sky_road_colour).mean() > 30:
                return colour

    def _verge_colour(self) -> np.ndarray:
        # Paving / dry grass tones, kept clearly apart from the sky-and-road grey.
        while True:
            colour = np.array([self.rng.uniform(120, 200), self.rng.uniform(100, 175),
                               self.rng.uniform(70, 140)], np.float32)
            if np.abs(colour - self.sky_road_colour).mean() > 30:
                return colour

    def pixels_per_metre(self, depth: float) -> float:
        return self.focal / depth

    def ground_row(self, depth: float) -> float:
        return self.horizon + self.focal * CAMERA_HEIGHT / depth

    def column(self, lateral: float, depth: float) -> float:
        return self.vanishing_x + lateral * self.focal / depth

    # --- layers, painted back to front -------------------------------------------------
    def paint_sky_and_ground(self) -> None:
        canvas, d = self.canvas, self.row_below_horizon
        canvas.paint(np.ones_like(canvas.label, bool), SKY, self.sky_road_colour)
        ground = d > 0.5
        lateral = np.where(ground, (self.xs - self.vanishing_x) * CAMERA_HEIGHT
                           / np.maximum(d, 0.5), 0)
        if self.side_free:
            for side, beyond_road in ((-1, lateral < self.road_left),
                                      (1, lateral > self.road_right)):
                label_id = self.verge_classes[side]
                canvas.paint(ground & beyond_road, label_id, self.verge_colours[label_id])
        else:
            canvas.paint(ground & (lateral < self.road_left), TERRAIN, self.verge_colour)
            canvas.paint(ground & (lateral > self.road_right), SIDEWALK, self.verge_colour)
        canvas.paint(ground & (lateral >= self.road_left) & (lateral <= self.road_right), ROAD,
                     self.sky_road_colour)
        # A curb: a thin darker band where the verge meets the road, on both sides alike.
        curb = ground & ((np.abs(lateral - self.road_right) < 0.12)
                         | (np.abs(lateral - self.road_left) < 0.12))
        canvas.rgb[curb] *= 0.8
        # Dashed centre line between the lanes (part of the road, as in Cityscapes).
        depth = self.focal * CAMERA_HEIGHT / np.maximum(d, 0.5)
        centre = (ground & (np.abs(lateral) < 0.08)
                  & (np.mod(depth + self.rng.uniform(0, 6), 6.0) < 3.0))
        canvas.rgb[centre & (canvas.label == ROAD)] = (225, 225, 220)

    def _street_segments(self, min_height: float, max_height: float, gap_probability: float
                         ) -> list[tuple[float, float, float]]:
        """(near depth, far depth, height) of consecutive blocks along one side of the street."""
        segments, depth = [], 1.0
        while depth < 160:
            length = self.rng.uniform(8, 30)
            if self.rng.random() < gap_probability:  # an alley: what is behind shows through
                depth += self.rng.uniform(3, 10)
                continue
            segments.append((depth, depth + length, self.rng.uniform(min_height, max_height)))
            depth += length
        return segments

    def _vertical_plane(self, side: int, plane: float):
        """Where a street-parallel vertical plane at lateral offset `plane` projects: per
        column its depth (a column sees the plane at one depth only), and per pixel the
        height above the ground of the plane point it sees."""
        offset = (self.xs[0] - self.vanishing_x) * side
        valid = offset > 0.5
        scale = np.where(valid, offset / abs(plane), 1.0)  # pixels per metre at the plane
        depth = np.where(valid, self.focal / scale, 1e6)  # 1e6: never on a facade
        height_above_ground = CAMERA_HEIGHT - self.row_below_horizon / scale[None, :]
        return depth, height_above_ground

    def _paint_plane(self, side: int, plane: float, segments, label_id: int, colours) -> None:
        """Paint blocks standing on a street-parallel plane (one colour per block)."""
        depth, height_above_ground = self._vertical_plane(side, plane)
        top = np.full(self.width, -1.0, np.float32)  # per column; -1: nothing there
        colour = np.zeros((self.width, 3), np.float32)
        for (near, far, height), block_colour in zip(segments, colours):
            columns = (depth >= near) & (depth < far)
            top[columns] = height
            colour[columns] = block_colour
        mask = (height_above_ground >= 0) & (height_above_ground <= top[None, :])
        self.canvas.label[mask] = label_id
        self.canvas.rgb[mask] = np.broadcast_to(colour[None], self.canvas.rgb.shape)[mask]
        # Weathered plaster / foliage: blotches with no direction. Oriented detail (masonry
        # courses converging to the vanishing point) would tell the side locally and spare
        # the network from knowing where it is.
        self.canvas.rgb[mask] *= (1 + 0.18 * self.plaster[mask])[:, None]

    def paint_street_sides(self) -> None:
        """A row of facades on each side: buildings on the right, walls (firewalls, noise
        barriers, yard walls) on the left, from one generator (one colour and height
        distribution, one texture). Only the side tells a building from a wall. The walls
        leave wider gaps onto open ground than the buildings do, as in a real street.
        Side-free scenes draw each side's class at random, buildings 6-16 m tall and walls
        1.5-4 m: there, height tells them apart."""
        if self.side_free:
            sides = [(side, plane, self.facade_classes[side])
                     for side, plane in ((1, self.facade_right), (-1, self.facade_left))]
        else:
            sides = [(1, self.facade_right, BUILDING), (-1, self.facade_left, WALL)]
        for side, plane, label_id in sides:
            gaps = 0.15 if label_id == BUILDING else 0.55
            if not self.side_free:
                low, high = 4.0, 16.0
            else:
                low, high = (6.0, 16.0) if label_id == BUILDING else (1.5, 4.0)
            blocks = self._street_segments(low, high, gap_probability=gaps)
            self._paint_plane(side, plane, blocks, label_id,
                              [grey_colour(self.rng, 80, 200, 25) for _ in blocks])

    def paint_fence(self) -> None:
        """Sometimes (always with all_classes) a fence in front of the facades, on either
        side."""
        if self.rng.random() < 0.35 and not self.all_classes:
            return
        side = 1 if self.rng.random() < 0.5 else -1
        plane = self.facade_right - 0.4 if side == 1 else self.facade_left + 0.4
        depth, height_above_ground = self._vertical_plane(side, plane)
        near = self.rng.uniform(2, 15)
        far = near + self.rng.uniform(10, 40)
        top = self.rng.uniform(1.2, 2.2)
        mask = (((depth >= near) & (depth < far))[None, :] & (height_above_ground >= 0)
                & (height_above_ground <= top))
        colour = np.array([self.rng.uniform(150, 200), self.rng.uniform(120, 160),
                           self.rng.uniform(100, 140)], np.float32)
        self.canvas.paint(mask, FENCE, colour)
        slats = (np.mod(depth, 0.9) < 0.3)[None, :]
        rail = np.abs(height_above_ground - top * 0.8) < 0.1
        self.canvas.rgb[mask & ~(slats | rail)] *= 0.55

    def sample_objects(self) -> list[tuple[float, str, float]]:
        """(depth, kind, lateral) of every object, to be painted far to near."""
        rng, objects = self.rng, []
        for _ in range(rng.integers(2, 6)):  # trees on either verge
            side_left = rng.random() < 0.5
            lateral = (rng.uniform(self.facade_left + 0.8, self.road_left - 0.8) if side_left
                       else rng.uniform(self.road_right + 0.8, self.facade_right - 0.5))
            objects.append((rng.uniform(6, 60), 'tree', lateral))
        depth = rng.uniform(6, 12)
        while depth < 60:  # street furniture at the curbs
            kind = rng.choice(['sign', 'light', 'lamp'])
            lateral = (self.road_right + 0.35 if rng.random() < 0.5 else self.road_left - 0.35)
            objects.append((depth, kind, lateral))
            depth += rng.uniform(7, 16)
        for _ in range(rng.integers(1, 5)):  # pedestrians on the verges
            lateral = (rng.uniform(self.road_right + 0.5, self.facade_right - 0.4)
                       if rng.random() < 0.5
                       else rng.uniform(self.facade_left + 0.5, self.road_left - 0.4))
            objects.append((rng.uniform(4, 35), 'person', lateral))
        for _ in range(rng.integers(1, 5)):  # cars: ahead (right lane), oncoming, parked
            lane = rng.choice(['ahead', 'oncoming', 'parked'])
            lateral = {'ahead': rng.uniform(1.0, self.road_right - 1.1),
                       'oncoming': rng.uniform(self.road_left + 1.1, -1.0),
                       'parked': (self.road_right - 1.0 if rng.random() < 0.5
                                  else self.road_left + 1.0)}[lane]
            objects.append((rng.uniform(6, 60), 'car', lateral))
        if rng.random() < 0.5:  # a litter bin: static clutter, ignored in evaluation
            lateral = (rng.uniform(self.road_right + 0.5, self.facade_right - 0.3)
                       if rng.random() < 0.5
                       else rng.uniform(self.facade_left + 0.3, self.road_left - 0.5))
            objects.append((rng.uniform(4, 20), 'bin', lateral))
        return sorted(objects, key=lambda item: -item[0])

    def paint_ego_vehicle(self) -> None:
        # The bonnet of the recording car, void in Cityscapes (labelId 1 -> trainId 255).
        self.canvas.current_object = -1
        bonnet = self.height * self.rng.uniform(0.05, 0.09)
        bulge = 1 - 0.5 * ((self.xs - self.width / 2) / (self.width / 2)) ** 2
        mask = self.ys > self.height - bonnet * bulge
        self.canvas.paint(mask, EGO_VEHICLE, grey_colour(self.rng, 20, 50, 5))

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        rgb, label, _ = self.render_with_instances()
        return rgb, label

    def render_with_instances(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.paint_sky_and_ground()
        self.paint_street_sides()
        self.paint_fence()
        objects = self.sample_objects()
        if self.all_classes:
            # Drawn after the default objects' numbers, so that default scenes keep their bytes.
            objects = sorted(objects + self.sample_rare_objects(), key=lambda item: -item[0])
        for depth, kind, lateral in objects:
            if kind in RARE_KINDS:
                self.canvas.current_object += 1
                self.paint_rare_object(depth, kind, lateral)
            else:
                self.paint_object(depth, kind, lateral)
        self.paint_ego_vehicle()
        rgb = self.canvas.rgb
        rgb *= (1 + 0.10 * self.texture)[..., None]
        rgb += 4.0 * self.grain[..., None]
        # One light and white balance per image, so colours vary between scenes.
        rgb *= self.rng.uniform(0.8, 1.15) * self.rng.uniform(0.93, 1.07, 3)
        return (np.clip(rgb, 0, 255).astype(np.uint8), self.canvas.label,
                self.canvas.instance_ids())


def render_street_scene(rng: np.random.Generator, height: int, width: int,
                        side_free: bool = False, all_classes: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (RGB image (H, W, 3) uint8, Cityscapes labelIds (H, W) uint8).
    ``side_free``: classes follow from looks, not from the side (see _draw_side_free_layout);
    ``all_classes``: also a truck, a bus, a tram, riders on a bicycle and a motorcycle and a
    parked bicycle, so that all 19 train classes are present (scene_vehicles.py)."""
    return _SceneSampler(rng, height, width, side_free, all_classes).render()


def render_street_scene_with_instances(rng: np.random.Generator, height: int, width: int,
                                       side_free: bool = False, all_classes: bool = False
                                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene and its Cityscapes instanceIds (H, W) uint16 (see Canvas.instance_ids)."""
    return _SceneSampler(rng, height, width, side_free, all_classes).render_with_instances()


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image `index` of `split`: independent of how many images are made."""
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def generate_cityscapes(out_dir: Union[str, os.PathLike], num_train: int, num_val: int,
                        size: tuple[int, int] = (128, 256), seed: int = 0,
                        side_free: bool = False, all_classes: bool = False) -> dict:
    """Write `num_train` + `num_val` synthetic scenes in the Cityscapes layout:

    leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png   (RGB)
    gtFine/{split}/{city}/{city}_{seq:06d}_000019_gtFine_labelIds.png    (official ids)
    gtFine/{split}/{city}/..._gtFine_labelTrainIds.png                   (0..18, 255)
    gtFine/{split}/{city}/..._gtFine_color.png                           (official RGBA)
    gtFine/{split}/{city}/..._gtFine_instanceIds.png  (16-bit: labelId * 1000 + instance
                                                       for person, car...; labelId elsewhere)

    Image i of a split depends only on (seed, split, i). ``side_free=True`` makes scenes whose
    classes do not depend on the side of the street (for training with random flips);
    ``all_classes=True`` adds the vehicles and riders the default scenes lack, so that every
    image has all 19 train classes (with ``size=(1024, 2048)``: Cityscapes at full scale).
    Returns a summary dict with the root, the counts, and per split the pixel count of every
    train class.

        info = generate_cityscapes('data/synthetic_cityscapes', 300, 60, size=(128, 256))
        # then: CityscapesDataset(data_root=info['root'], data_prefix=dict(
        #     img_path='leftImg8bit/val', seg_map_path='gtFine/val'), pipeline=[...])
    """
    height, width = check_arguments(num_train, num_val, size)
    root = Path(out_dir)
    prepare_output_dir(root)
    # The marker goes first, so that an interrupted generation can simply be run again.
    marker = dict(generator='posattack.synthetic.generate_cityscapes', num_train=int(num_train),
                  num_val=int(num_val), size=[height, width], seed=int(seed),
                  side_free=bool(side_free), all_classes=bool(all_classes))
    write_json_atomic(str(root / MARKER_FILE), dict(marker, complete=False))
    class_pixels = {}
    files = {}
    for split, count in (('train', int(num_train)), ('val', int(num_val))):
        counts = np.zeros(256, np.int64)
        files[split] = []
        cities = CITIES[split]
        for index in range(count):
            city = cities[index * len(cities) // count]
            stem = cityscapes_stem(city, index)
            image_dir = root / 'leftImg8bit' / split / city
            label_dir = root / 'gtFine' / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            rgb, label_ids, instance_ids = render_street_scene_with_instances(
                scene_rng(seed, split, index), height, width, side_free, all_classes)
            train_ids = ID_TO_TRAINID[label_ids]
            colour = np.concatenate(
                [ID_TO_COLOR[label_ids], np.full((height, width, 1), 255, np.uint8)], axis=2)
            image_path = str(image_dir / f'{stem}_leftImg8bit.png')
            write_image_atomic(image_path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            write_image_atomic(str(label_dir / f'{stem}_gtFine_labelIds.png'), label_ids)
            write_image_atomic(str(label_dir / f'{stem}_gtFine_labelTrainIds.png'), train_ids)
            write_image_atomic(str(label_dir / f'{stem}_gtFine_color.png'),
                              cv2.cvtColor(colour, cv2.COLOR_RGBA2BGRA))
            write_image_atomic(str(label_dir / f'{stem}_gtFine_instanceIds.png'), instance_ids)
            counts += np.bincount(train_ids.ravel(), minlength=256)
            files[split].append(image_path)
        class_pixels[split] = {name: int(counts[train_id])
                               for train_id, name in enumerate(TRAINID_TO_NAME)}
        class_pixels[split]['ignored'] = int(counts[IGNORE_INDEX])
    info = {
        'root': str(root),
        'num_train': int(num_train),
        'num_val': int(num_val),
        'size': [height, width],
        'seed': int(seed),
        'side_free': bool(side_free),
        'all_classes': bool(all_classes),
        'class_pixels': class_pixels,
        'classes_present': {split: [name for name in TRAINID_TO_NAME if pixels[name] > 0]
                            for split, pixels in class_pixels.items()},
    }
    write_json_atomic(str(root / MARKER_FILE), dict(marker, complete=True))
    info['files'] = files
    return info
