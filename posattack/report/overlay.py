"""Qualitative panels: which images does the attack change most, and where.

``OverlaySelector`` keeps the K images with the largest change score while a sweep streams
through a dataset (a bounded heap: memory holds at most K payloads whatever the dataset
size). ``render_panel`` draws one row of tiles: image | ground truth | prediction tiles
(e.g. clean | targeted | random), with pixels whose label changed from the clean
prediction highlighted and the paper's center box [W/4, 3W/4) drawn dashed, so the
periphery is what lies outside it.

Usage::

    selector = OverlaySelector(k=4)
    selector.offer(changed_fraction(clean, targeted, gt), key=img_path, payload=(img, gt, preds))
    for score, key, (img, gt, preds) in selector.selected():
        panel = render_panel(img, gt, preds, cityscapes_palette(), periphery=(W // 4, 3 * W // 4))
        save_panel(os.path.join('overlays', os.path.basename(key)), panel)
"""
from __future__ import annotations

import heapq
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple, Optional

import cv2
import numpy as np

from ..utils.fileio import write_image_atomic

# Drawing colours, RGB. None of them is a Cityscapes class colour.
CHANGED_OUTLINE = (255, 0, 255)   # magenta: the border of changed areas
CHANGED_TINT = (255, 255, 255)    # changed pixels are blended toward white
CHANGED_TINT_ALPHA = 0.45
BOX_COLOR = (0, 255, 255)         # cyan: the dashed center box
BACKGROUND = (255, 255, 255)
TITLE_COLOR = (0, 0, 0)


def cityscapes_palette() -> list[tuple[int, int, int]]:
    """The 19 Cityscapes train-id colours (RGB), from mmseg's CityscapesDataset."""
    from mmseg.datasets import CityscapesDataset  # heavy import, only when asked for
    return [tuple(int(c) for c in color) for color in CityscapesDataset.METAINFO['palette']]


def changed_fraction(reference: np.ndarray, attacked: np.ndarray, gt: Optional[np.ndarray] = None,
                     ignore_index: int = 255) -> float:
    """Fraction of valid pixels whose predicted label differs between two label maps.

    Valid pixels are those whose ground truth is not ``ignore_index`` (all pixels when
    ``gt`` is None). An image without valid pixels scores 0.0.
    """
    reference, attacked = np.asarray(reference), np.asarray(attacked)
    if reference.shape != attacked.shape:
        raise ValueError(f'label maps differ in shape: {reference.shape} vs {attacked.shape}')
    changed = reference != attacked
    if gt is not None:
        gt = np.asarray(gt)
        if gt.shape != reference.shape:
            raise ValueError(f'ground truth shape {gt.shape} differs from the predictions\' '
                             f'{reference.shape}')
        valid = gt != ignore_index
        count = int(valid.sum())
        return float(changed[valid].sum()) / count if count else 0.0
    return float(changed.mean()) if changed.size else 0.0


class _Entry:
    """A heap entry ordered from worst to best: lower score, then (on ties) larger key."""
    __slots__ = ('score', 'key', 'payload')

    def __init__(self, score: float, key: Any, payload: Any):
        self.score, self.key, self.payload = score, key, payload

    def __lt__(self, other: '_Entry') -> bool:
        if self.score != other.score:
            return self.score < other.score
        return self.key > other.key  # ties: the smaller key is kept


class OverlaySelector:
    """Keep the K items with the highest score from a stream, in O(K) memory.

    Ties are broken by key: among equal scores the smaller key is kept and listed first, so
    the selection does not depend on the order in which items arrive. Keys must be
    comparable with each other (e.g. image paths or dataset indices).

    Usage::

        selector = OverlaySelector(k=2)
        for key, score in [('a', 0.1), ('b', 0.5), ('c', 0.3)]: selector.offer(score, key, None)
        [key for _, key, _ in selector.selected()]  # ['b', 'c']
    """

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f'OverlaySelector needs k, the number of images to keep, as an '
                             f'integer >= 0; got {k!r}')
        self.k = int(k)
        self._heap: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, score: float, key: Hashable, payload: Any = None) -> bool:
        """Consider one item; returns True when it is (for now) among the top K."""
        score = float(score)
        if math.isnan(score):
            raise ValueError(f'score of {key!r} is NaN; a change score must be a number')
        if self.k == 0:
            return False
        entry = _Entry(score, key, payload)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
            return True
        if self._heap[0] < entry:  # better than the worst kept one
            heapq.heapreplace(self._heap, entry)
            return True
        return False

    def merge(self, other: 'OverlaySelector') -> 'OverlaySelector':
        """Offer every item kept by ``other`` (e.g. another process's selector); returns self."""
        for score, key, payload in other.selected():
            self.offer(score, key, payload)
        return self

    def selected(self) -> list[tuple[float, Any, Any]]:
        """(score, key, payload) of the kept items, best first (ties: smaller key first)."""
        return [(e.score, e.key, e.payload) for e in sorted(self._heap, reverse=True)]


class PanelGeometry(NamedTuple):
    """Where the tiles lie in a panel: tile i covers rows [title_height, title_height +
    tile_height) and columns [tile_x[i], tile_x[i] + tile_width)."""
    tile_height: int
    tile_width: int
    title_height: int
    gap: int
    tile_x: tuple[int, ...]
    height: int
    width: int


def panel_geometry(num_tiles: int, tile_height: int, tile_width: int) -> PanelGeometry:
    """Layout of a panel: a title strip above the tiles, ``gap`` blank columns between them."""
    title_height = int(min(48, max(16, round(0.07 * tile_width))))
    gap = max(2, tile_width // 64)
    tile_x = tuple(i * (tile_width + gap) for i in range(num_tiles))
    width = num_tiles * tile_width + (num_tiles - 1) * gap
    return PanelGeometry(tile_height, tile_width, title_height, gap, tile_x,
                         title_height + tile_height, width)


def colorize_labels(labels: np.ndarray, palette: Sequence[Sequence[int]],
                    ignore_index: int = 255) -> np.ndarray:
    """RGB image of a label map: class i in palette[i], ``ignore_index`` black."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f'a label map must be 2-D (H, W), got shape {labels.shape}')
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f'a label map must hold integer class ids, got dtype {labels.dtype}')
    palette = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    ignored = labels == ignore_index
    colored = (labels >= 0) & (labels < len(palette)) & ~ignored
    unknown = ~(colored | ignored)
    if unknown.any():
        bad = np.unique(labels[unknown])[:5].tolist()
        raise ValueError(f'label(s) {bad} have no palette colour (palette has {len(palette)} '
                         f'colours, ignore_index={ignore_index}); pass the dataset\'s palette')
    colors = np.zeros(labels.shape + (3,), dtype=np.uint8)  # ignored pixels stay black
    colors[colored] = np.clip(palette, 0, 255).astype(np.uint8)[labels[colored]]
    return colors


def draw_dashed_rectangle(image: np.ndarray, x0: int, y0: int, x1: int, y1: int,
                          color: Sequence[int], thickness: int = 1, dash: int = 6,
                          gap: int = 4) -> np.ndarray:
    """Draw (in place) a dashed rectangle whose corners are the inclusive pixels (x0, y0),
    (x1, y1); dashes start at every corner, so all four corners are drawn."""
    color = tuple(int(c) for c in color)

    def dashed_line(start, end):
        (xa, ya), (xb, yb) = start, end
        length = max(abs(xb - xa), abs(yb - ya))
        for s in range(0, length + 1, dash + gap):
            e = min(s + dash - 1, length)
            t0, t1 = s / max(length, 1), e / max(length, 1)
            p0 = (int(round(xa + (xb - xa) * t0)), int(round(ya + (yb - ya) * t0)))
            p1 = (int(round(xa + (xb - xa) * t1)), int(round(ya + (yb - ya) * t1)))
            cv2.line(image, p0, p1, color, thickness)

    dashed_line((x0, y0), (x1, y0))
    dashed_line((x0, y1), (x1, y1))
    dashed_line((x0, y0), (x0, y1))
    dashed_line((x1, y0), (x1, y1))
    return image


def _changed_highlight(tile: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """Blend changed pixels toward white and outline the changed areas in magenta."""
    tile = tile.copy()
    tinted = (1 - CHANGED_TINT_ALPHA) * tile[changed] + CHANGED_TINT_ALPHA * np.array(CHANGED_TINT)
    tile[changed] = np.round(tinted).astype(np.uint8)
    mask = changed.astype(np.uint8)
    inner = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    tile[(mask > 0) & (inner == 0)] = CHANGED_OUTLINE
    return tile


def _title_strip(text: str, height: int, width: int) -> np.ndarray:
    """A white strip with ``text`` centred, shrunk (then shortened) until it fits."""
    strip = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def fitting_scale(label):
        (w, h), _ = cv2.getTextSize(label, font, 1.0, 1)
        return min(0.6 * height / max(h, 1), (width - 4) / max(w, 1), 1.2)

    full_text, scale = text, fitting_scale(text)
    keep = len(full_text)
    while scale < 0.3 and keep > 1:  # too long to read: shorten rather than shrink further
        keep -= 1
        text = full_text[:keep] + '..'
        scale = fitting_scale(text)
    scale = max(scale, 0.3)
    (w, h), baseline = cv2.getTextSize(text, font, scale, 1)
    origin = (max(0, (width - w) // 2), (height + h) // 2)
    cv2.putText(strip, text, origin, font, scale, TITLE_COLOR, 1, cv2.LINE_AA)
    return strip


def _label_array(name: str, labels: Any, shape: tuple[int, int]) -> np.ndarray:
    if hasattr(labels, 'detach'):  # torch tensors from mmseg's data samples
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[0] == 1:  # mmseg keeps label maps as (1, H, W)
        labels = labels[0]
    if labels.shape != shape:
        raise ValueError(f'{name} has shape {labels.shape}, but the image is {shape} (H, W); '
                         f'pass label maps at the image\'s resolution')
    return labels


def render_panel(image_rgb: np.ndarray, gt: np.ndarray, preds: Mapping[str, np.ndarray],
                 palette: Sequence[Sequence[int]], ignore_index: int = 255,
                 periphery: Optional[tuple[int, int]] = None,
                 changed_from: Optional[str] = 'clean',
                 tile_width: Optional[int] = None) -> np.ndarray:
    """One row of titled tiles: image | ground truth | one tile per prediction; RGB uint8.

    - Label maps use ``palette`` (class i -> palette[i]); ``ignore_index`` is drawn black.
    - In every prediction tile other than ``preds[changed_from]``, pixels whose label differs
      from it are blended toward white and the changed areas outlined in magenta
      (``changed_from=None``: no highlighting). Ignored ground-truth pixels are highlighted
      too when the prediction changed there.
    - ``periphery=(x0, x1)``: the center columns [x0, x1) (the paper: (W // 4, 3 * W // 4))
      are boxed with a cyan dashed rectangle on every tile, at columns x0 and x1 - 1; the
      periphery is outside the box.
    - ``tile_width`` resizes tiles to that width (image: area, labels: nearest; the change
      highlight is computed after resizing); the layout is given by :func:`panel_geometry`
      for the tile size. Full Cityscapes frames (2048 wide) make a panel over 10,000 pixels
      wide at native size; ``tile_width=512`` keeps it readable and small.

    Usage::

        preds = {'clean': clean, 'targeted N=100': targeted, 'random N=100 seed=0': random}
        panel = render_panel(image_rgb, gt, preds, cityscapes_palette(), periphery=(512, 1536))
        save_panel('work_dirs/attack/overlays/000_frankfurt.png', panel)
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f'image_rgb must be (H, W, 3), got shape {image_rgb.shape}')
    if image_rgb.dtype != np.uint8:
        raise ValueError(f'image_rgb must be uint8 (0-255), got {image_rgb.dtype}')
    height, width = image_rgb.shape[:2]
    gt = _label_array('gt', gt, (height, width))
    preds = {name: _label_array(f'preds[{name!r}]', p, (height, width))
             for name, p in preds.items()}
    if changed_from is not None and changed_from not in preds:
        raise ValueError(f'changed_from={changed_from!r} is not among the predictions '
                         f'{list(preds)}; name the reference prediction or pass None')
    if periphery is not None:
        x0, x1 = (int(v) for v in periphery)
        if not 0 <= x0 < x1 <= width:
            raise ValueError(f'periphery=(x0, x1) must be center columns with 0 <= x0 < x1 <= '
                             f'W={width}; got {periphery}')

    if tile_width is not None and tile_width != width:
        if tile_width < 1:
            raise ValueError(f'tile_width must be >= 1, got {tile_width}')
        scale = tile_width / width
        size = (int(tile_width), max(1, int(round(height * scale))))
        image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
        # Labels are at most 255 (checked when colorized), but resize before that check needs
        # a dtype cv2 accepts: int32 works with nearest neighbour.
        gt = cv2.resize(gt.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
        preds = {n: cv2.resize(p.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
                 for n, p in preds.items()}
        if periphery is not None:
            x0 = min(max(0, int(round(x0 * scale))), size[0] - 1)
            x1 = min(max(x0 + 1, int(round(x1 * scale))), size[0])
        height, width = size[1], size[0]

    tiles = [('image', image_rgb.copy()),
             ('ground truth', colorize_labels(gt, palette, ignore_index))]
    reference = preds.get(changed_from) if changed_from is not None else None
    for name, pred in preds.items():
        tile = colorize_labels(pred, palette, ignore_index)
        if reference is not None and name != changed_from:
            tile = _changed_highlight(tile, pred != reference)
        tiles.append((name, tile))

    geometry = panel_geometry(len(tiles), height, width)
    panel = np.full((geometry.height, geometry.width, 3), BACKGROUND, dtype=np.uint8)
    thickness = max(1, width // 512)
    for (title, tile), x in zip(tiles, geometry.tile_x):
        tile = np.ascontiguousarray(tile)
        if periphery is not None:
            draw_dashed_rectangle(tile, x0, 0, x1 - 1, height - 1, BOX_COLOR, thickness,
                                  dash=max(4, width // 32), gap=max(3, width // 48))
        panel[geometry.title_height:, x:x + width] = tile
        panel[:geometry.title_height, x:x + width] = _title_strip(
            title, geometry.title_height, width)
    return panel


def save_panel(path: str, panel: np.ndarray) -> str:
    """Write an RGB panel with OpenCV, atomically (a temporary file with the same extension,
    then a rename); returns ``path``."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1]
    if not extension:
        raise ValueError(f'panel path {path!r} has no extension; use e.g. "{path}.png"')
    panel = np.asarray(panel)
    if panel.ndim != 3 or panel.shape[2] != 3 or panel.dtype != np.uint8:
        raise ValueError(f'a panel is an (H, W, 3) uint8 RGB image; '
                         f'got {panel.shape} {panel.dtype}')
    return write_image_atomic(path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
