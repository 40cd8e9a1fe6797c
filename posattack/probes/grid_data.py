"""Grid inputs for position probes: one patch in one cell of a g x g canvas of zeros.

Islam et al. (ICCV 2021, Table 1) put a 32x32 CIFAR-10 image into one cell of an otherwise
empty canvas. The label is the cell index (the *location* task: where is the patch?) or the
patch's own class (*classification*: what is it, wherever it is). The canvas is zero *after*
normalisation, so the network sees exactly zero outside the patch, as a padded border would.

Patches come from

* a folder of images (``patch_dir``): flat (unlabelled, location only) or
  ``root/<class_name>/*.png`` (labelled, both tasks); every image is resized to the patch size;
* Cityscapes-layout data (``cityscapes_root``; real, or made by
  ``posattack.data.synthetic.generate_cityscapes``): crops of the ``leftImg8bit`` images on a
  regular grid, labelled with the majority ``labelTrainIds`` class of the crop.

Usage::

    dataset = GridPatchDataset(grid_size=3, patch_size=16, task='location',
                               cityscapes_root='data/synthetic_cityscapes', split='train')
    sample = dataset[0]      # {'inputs': float tensor (3, 48, 48), 'data_samples': cell index}
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.dataset import BaseDataset
from mmseg.registry import DATASETS, TRANSFORMS

from ..data.cityscapes_labels import IGNORE_INDEX, TRAINID_TO_NAME

__all__ = [
    'IMAGE_EXTENSIONS', 'IMAGENET_MEAN', 'IMAGENET_STD', 'GridPatchDataset', 'PackGridInputs',
    'PatchSet', 'PlacePatchInGrid', 'TASKS', 'cell_name', 'cell_names', 'check_grid_size',
    'crop_cityscapes_patches', 'load_patch_folder', 'patch_folder_classes',
]

TASKS = ('location', 'classification')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# RGB, 0..255: the statistics mmseg's Cityscapes configs normalise with.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def check_grid_size(grid_size: Any) -> int:
    """``grid_size`` as an int >= 2, else a ValueError saying why."""
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, np.integer)) or grid_size < 2:
        raise ValueError(f'grid_size must be an integer >= 2 (a g x g grid has g*g cells; with '
                         f'g = 1 there is no position to tell), got {grid_size!r}.')
    return int(grid_size)


def cell_name(index: int, grid_size: int) -> str:
    """``'cell_<row>_<col>'`` of cell ``index`` (row-major), e.g. ``cell_name(5, 3) == "
    "'cell_1_2'``."""
    row, col = divmod(int(index), int(grid_size))
    return f'cell_{row}_{col}'


def cell_names(grid_size: int) -> list[str]:
    """Names of all cells of a g x g grid, in label order (row-major)."""
    grid_size = check_grid_size(grid_size)
    return [cell_name(i, grid_size) for i in range(grid_size * grid_size)]


@dataclass
class PatchSet:
    """Patches (N, P, P, 3) uint8 RGB, their class ids (N,) or None, and the class names."""
    patches: np.ndarray
    labels: Optional[np.ndarray]
    class_names: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.patches)


def _read_rgb(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'Cannot read image {path}: not an image file or corrupt.')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def patch_folder_classes(root: Union[str, os.PathLike]) -> list[str]:
    """Class names of a labelled patch folder (its sub-folders holding images); [] when flat."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'Patch folder not found: {root}. Give a folder of images, or '
                                f'root/<class_name>/*.png for labelled patches.')
    return sorted(d.name for d in root.iterdir() if d.is_dir() and _image_files(d))


def load_patch_folder(root: Union[str, os.PathLike], patch_size: int,
                      max_patches: Optional[int] = None, seed: int = 0) -> PatchSet:
    """Every image of ``root`` (flat) or ``root/<class_name>/`` (labelled), resized to a patch.

    Usage::

        patches = load_patch_folder('data/cifar_patches/train', patch_size=32)
        patches.class_names       # ['airplane', 'automobile', ...] or [] for a flat folder
    """
    root = Path(root)
    class_names = patch_folder_classes(root)
    if class_names:
        flat = _image_files(root)
        if flat:
            raise ValueError(f'Patch folder {root} mixes images ({flat[0].name}, ...) with class '
                             f'sub-folders ({", ".join(class_names[:3])}, ...); use one layout: '
                             f'root/*.png or root/<class_name>/*.png.')
        files = [(path, label) for label, name in enumerate(class_names)
                 for path in _image_files(root / name)]
    else:
        files = [(path, -1) for path in _image_files(root)]
    if not files:
        raise ValueError(f'Patch folder {root} holds no images ({", ".join(IMAGE_EXTENSIONS)}); '
                         f'put images in it, or root/<class_name>/*.png for labelled patches.')
    if max_patches is not None and len(files) > max_patches:
        keep = np.sort(np.random.default_rng(seed).choice(len(files), max_patches, replace=False))
        files = [files[i] for i in keep]
    patches = np.stack([_resize(_read_rgb(str(path)), patch_size) for path, _ in files])
    labels = np.array([label for _, label in files], np.int64) if class_names else None
    return PatchSet(patches, labels, class_names, source=f'folder {root}')


def _cityscapes_pairs(data_root: Path, split: str) -> list[tuple[Path, Path]]:
    image_root = data_root / 'leftImg8bit' / split
    if not image_root.is_dir():
        raise FileNotFoundError(
            f'No Cityscapes images at {image_root}: expected leftImg8bit/{split}/<city>/*.png '
            f'(make synthetic data with tools/dataset_converters/make_synthetic_cityscapes.py).')
    pairs = []
    for image in sorted(image_root.glob('*/*_leftImg8bit.png')):
        stem = image.name[:-len('_leftImg8bit.png')]
        label = (data_root / 'gtFine' / split / image.parent.name
                 / f'{stem}_gtFine_labelTrainIds.png')
        if not label.is_file():
            raise FileNotFoundError(
                f'{image} has no label map {label}; the Cityscapes layout needs '
                f'gtFine/{split}/<city>/<stem>_gtFine_labelTrainIds.png.')
        pairs.append((image, label))
    if not pairs:
        raise ValueError(f'{image_root} holds no *_leftImg8bit.png images in city folders.')
    return pairs


def crop_cityscapes_patches(data_root: Union[str, os.PathLike], split: str, patch_size: int,
                            crop_size: Optional[int] = None, crop_stride: Optional[int] = None,
                            classes: Optional[Sequence[str]] = None,
                            min_class_fraction: float = 0.5,
                            max_patches_per_class: Optional[int] = None,
                            max_images: Optional[int] = None, seed: int = 0) -> PatchSet:
    """Square crops of Cityscapes-layout images, labelled with their majority train class.

    Crops of ``crop_size`` pixels (default: the patch size) are taken every ``crop_stride``
    pixels (default: ``crop_size``, no overlap) and resized to ``patch_size``. A crop is kept
    when its most frequent class covers at least ``min_class_fraction`` of it. ``classes``
    (train class names) keeps those only, labelled 0..len-1 in that order; by default labels
    are Cityscapes train ids (19 classes), the same for every split.
    ``max_patches_per_class`` balances the classes by a seeded draw.

    Usage::

        patches = crop_cityscapes_patches('data/synthetic_cityscapes', 'train', 16,
                                          classes=['road', 'building', 'vegetation', 'car'])
    """
    data_root = Path(data_root)
    crop_size = int(crop_size or patch_size)
    crop_stride = int(crop_stride or crop_size)
    if crop_size < 1 or crop_stride < 1:
        raise ValueError(
            f'crop_size and crop_stride must be positive, got {crop_size}, {crop_stride}.')
    if not 0.0 < float(min_class_fraction) <= 1.0:
        raise ValueError(f'min_class_fraction must lie in (0, 1], got {min_class_fraction!r}.')
    if classes is None:
        class_names = list(TRAINID_TO_NAME)
        label_of_train_id = {train_id: train_id for train_id in range(len(class_names))}
    else:
        unknown = [name for name in classes if name not in TRAINID_TO_NAME]
        if unknown or not classes:
            raise ValueError(f'classes must be Cityscapes train class names; unknown: {unknown} '
                             f'(valid: {", ".join(TRAINID_TO_NAME)}).')
        class_names = list(classes)
        label_of_train_id = {TRAINID_TO_NAME.index(name): i for i, name in enumerate(class_names)}
    pairs = _cityscapes_pairs(data_root, split)
    if max_images is not None:
        pairs = pairs[:int(max_images)]
    patches, labels = [], []
    min_pixels = min_class_fraction * crop_size * crop_size
    for image_path, label_path in pairs:
        image = _read_rgb(str(image_path))
        train_ids = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if train_ids is None or train_ids.shape[:2] != image.shape[:2]:
            raise ValueError(f'{label_path} is unreadable or not the size of {image_path}.')
        height, width = train_ids.shape[:2]
        for top in range(0, height - crop_size + 1, crop_stride):
            for left in range(0, width - crop_size + 1, crop_stride):
                crop_ids = train_ids[top:top + crop_size, left:left + crop_size]
                counts = np.bincount(crop_ids.ravel(), minlength=IGNORE_INDEX + 1)
                counts[IGNORE_INDEX] = 0
                majority = int(counts.argmax())
                if counts[majority] < min_pixels or majority not in label_of_train_id:
                    continue
                patches.append(
                    _resize(image[top:top + crop_size, left:left + crop_size], patch_size))
                labels.append(label_of_train_id[majority])
    if not patches:
        raise ValueError(
            f'No crop of {crop_size}x{crop_size} from {len(pairs)} images of {data_root}/{split} '
            'has '
            f'a class covering {min_class_fraction:.0%} of it' +
            (f' among {class_names}' if classes is not None else '') +
            '; lower min_class_fraction, use a smaller crop_size or other classes.')
    patches_array, labels_array = np.stack(patches), np.array(labels, np.int64)
    if max_patches_per_class is not None:
        rng = np.random.default_rng(seed)
        keep = []
        for label in np.unique(labels_array):
            members = np.flatnonzero(labels_array == label)
            if len(members) > max_patches_per_class:
                members = np.sort(rng.choice(members, int(max_patches_per_class), replace=False))
            keep.append(members)
        order = np.sort(np.concatenate(keep))
        patches_array, labels_array = patches_array[order], labels_array[order]
    return PatchSet(patches_array, labels_array, class_names,
                    source=f'cityscapes {data_root} ({split})')


@TRANSFORMS.register_module()
class PlacePatchInGrid(BaseTransform):
    """Normalise ``results['patch']`` and put it into cell ``results['cell']`` of a zero canvas.

    Reads ``patch`` (P, P, 3) uint8 RGB, ``cell`` (row-major index), ``grid_size`` and
    ``cell_size``; writes ``img``, float32 (g*cell_size, g*cell_size, 3), zero outside the
    patch. The patch sits at the centre of its cell (``offset='center'``) or anywhere inside
    it (``offset='random'``). ``to_bgr`` feeds models that see BGR input (mmseg models whose
    data preprocessor does not convert BGR to RGB); ``mean`` and ``std`` are then in BGR order.

    Usage::

        PlacePatchInGrid()(dict(patch=patch, cell=4, grid_size=3, cell_size=16))['img'].shape
        # (48, 48, 3)
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 offset: str = 'center', to_bgr: bool = False):
        if offset not in ('center', 'random'):
            raise ValueError(f"offset must be 'center' or 'random', got {offset!r}.")
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, -1)
        self.std = np.asarray(std, np.float32).reshape(1, 1, -1)
        if self.mean.size != 3 or self.std.size != 3 or (self.std <= 0).any():
            raise ValueError(f'mean and std need 3 values each (std > 0), got {mean}, {std}.')
        self.offset = offset
        self.to_bgr = to_bgr

    def transform(self, results: dict) -> dict:
        patch = np.asarray(results['patch'])
        grid_size, cell_size = int(results['grid_size']), int(results['cell_size'])
        height, width = patch.shape[:2]
        if height > cell_size or width > cell_size:
            raise ValueError(f'Patch of {height}x{width} does not fit a grid cell of '
                             f'{cell_size}x{cell_size}; use cell_size >= patch size.')
        row, col = divmod(int(results['cell']), grid_size)
        if self.offset == 'center':
            dy, dx = (cell_size - height) // 2, (cell_size - width) // 2
        else:
            dy, dx = np.random.randint(cell_size - height + 1), np.random.randint(cell_size -
                                                                                  width + 1)
        if self.to_bgr:  # mean and std are in the order the model sees, so flip first
            patch = patch[..., ::-1]
        values = (patch.astype(np.float32) - self.mean) / self.std
        canvas = np.zeros((grid_size * cell_size, grid_size * cell_size, 3), np.float32)
        top, left = row * cell_size + dy, col * cell_size + dx
        canvas[top:top + height, left:left + width] = values
        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(mean={self.mean.ravel().tolist()}, '
                f'std={self.std.ravel().tolist()}, offset={self.offset!r}, to_bgr={self.to_bgr})')


@TRANSFORMS.register_module()
class PackGridInputs(BaseTransform):
    """``img`` (H, W, 3) -> ``inputs`` tensor (3, H, W); ``gt_label`` -> ``data_samples`` (int).

    The integer label collates into a LongTensor (``default_collate``) or a list of ints
    (``pseudo_collate``); the probe models accept both.
    """

    def transform(self, results: dict) -> dict:
        image = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
        return {'inputs': torch.from_numpy(image), 'data_samples': int(results['gt_label'])}


@DATASETS.register_module()
class GridPatchDataset(BaseDataset):
    """Canvases of g x g cells with one patch in one cell; label = cell or patch class.

    Exactly one patch source: ``patch_dir`` (a folder, see :func:`load_patch_folder`) or
    ``cityscapes_root`` + ``split`` (see :func:`crop_cityscapes_patches`, whose options
    ``crop_size``, ``crop_stride``, ``classes``, ``min_class_fraction``,
    ``max_patches_per_class`` and ``max_images`` pass through). Each patch is placed in
    ``placements_per_patch`` cells drawn so that every cell gets the same share (``'all'``:
    every cell), with ``seed``. ``task='location'`` labels a sample with its cell index
    (metainfo classes ``cell_r_c``); ``'classification'`` with its patch's class.

    Usage::

        dataset = GridPatchDataset(grid_size=5, patch_size=16, task='classification',
                                   cityscapes_root='data/synthetic_cityscapes', split='val',
                                   classes=['road', 'building', 'vegetation', 'car'])
    """

    def __init__(self, grid_size: int, patch_size: int, task: str = 'location',
                 patch_dir: Optional[str] = None, cityscapes_root: Optional[str] = None,
                 split: str = 'train', cell_size: Optional[int] = None,
                 placements_per_patch: Union[int, str] = 1, crop_size: Optional[int] = None,
                 crop_stride: Optional[int] = None, classes: Optional[Sequence[str]] = None,
                 min_class_fraction: float = 0.5, max_patches_per_class: Optional[int] = None,
                 max_images: Optional[int] = None, max_patches: Optional[int] = None,
                 seed: int = 0, pipeline: Optional[Sequence[Any]] = None, **kwargs):
        self.grid_size = check_grid_size(grid_size)
        if isinstance(patch_size, bool) or not isinstance(patch_size,
                                                          (int, np.integer)) or patch_size < 1:
            raise ValueError(f'patch_size must be a positive integer (pixels), got {patch_size!r}.')
        self.patch_size = int(patch_size)
        self.cell_size = int(cell_size if cell_size is not None else patch_size)
        if self.patch_size > self.cell_size:
            raise ValueError(f'patch_size {self.patch_size} is larger than the grid cell '
                             f'(cell_size {self.cell_size}): a patch must fit into one cell; set '
                             f'cell_size >= patch_size or use smaller patches.')
        if task not in TASKS:
            raise ValueError(f'Unknown task {task!r}; choose one of {", ".join(map(repr, TASKS))}.')
        self.task = task
        if placements_per_patch != 'all' and (
                isinstance(placements_per_patch, bool) or not isinstance(placements_per_patch, int)
                or placements_per_patch < 1):
            raise ValueError(f"placements_per_patch must be a positive integer or 'all', got "
                             f'{placements_per_patch!r}.')
        self.placements_per_patch = placements_per_patch
        self.seed = int(seed)
        if (patch_dir is None) == (cityscapes_root is None):
            raise ValueError('Give exactly one patch source: patch_dir (a folder of images) or '
                             'cityscapes_root (Cityscapes-layout data, e.g. from '
                             'tools/dataset_converters/make_synthetic_cityscapes.py).')
        if patch_dir is not None:
            if classes is not None:
                raise ValueError('classes selects Cityscapes classes; with patch_dir the classes '
                                 'are the folder names.')
            self.patch_set = load_patch_folder(patch_dir, self.patch_size, max_patches, self.seed)
        else:
            self.patch_set = crop_cityscapes_patches(
                cityscapes_root, split, self.patch_size, crop_size=crop_size,
                crop_stride=crop_stride, classes=classes, min_class_fraction=min_class_fraction,
                max_patches_per_class=max_patches_per_class, max_images=max_images, seed=self.seed)
            if max_patches is not None and len(self.patch_set) > max_patches:
                keep = np.sort(np.random.default_rng(self.seed).choice(
                    len(self.patch_set), max_patches, replace=False))
                self.patch_set = PatchSet(self.patch_set.patches[keep], self.patch_set.labels[keep],
                                          self.patch_set.class_names, self.patch_set.source)
        if task == 'classification' and self.patch_set.labels is None:
            raise ValueError(f'The classification task needs labelled patches, but '
                             f'{self.patch_set.source} is a flat folder; use '
                             f'root/<class_name>/*.png.')
        classes_meta = (cell_names(self.grid_size) if task == 'location'
                        else list(self.patch_set.class_names))
        metainfo = dict(kwargs.pop('metainfo', None) or {}, classes=tuple(classes_meta),
                        grid_size=self.grid_size, cell_size=self.cell_size,
                        patch_size=self.patch_size)
        if pipeline is None:  # instances, so the default works in any registry scope
            pipeline = [PlacePatchInGrid(), PackGridInputs()]
        super().__init__(metainfo=metainfo, pipeline=list(pipeline), **kwargs)
        # strings added after BaseDataset's init, which would try to read them as meta files
        self._metainfo.update(task=task, patch_source=self.patch_set.source)

    def _placements(self) -> tuple[np.ndarray, np.ndarray]:
        """(patch index, cell) pairs; each cell gets an equal share (up to one)."""
        num_patches, num_cells = len(self.patch_set), self.grid_size ** 2
        if self.placements_per_patch == 'all':
            patch_ids = np.repeat(np.arange(num_patches), num_cells)
            return patch_ids, np.tile(np.arange(num_cells), num_patches)
        count = num_patches * self.placements_per_patch
        rng = np.random.default_rng(self.seed)
        patch_ids = np.repeat(np.arange(num_patches), self.placements_per_patch)
        cells = np.tile(np.arange(num_cells), math.ceil(count / num_cells))[:count]
        return patch_ids, rng.permutation(cells)

    def load_data_list(self) -> list[dict]:
        patch_ids, cells = self._placements()
        labels = self.patch_set.labels
        return [dict(patch_index=int(p), cell=int(c), grid_size=self.grid_size,
                     cell_size=self.cell_size,
                     gt_label=int(c) if self.task == 'location' else int(labels[p]))
                for p, c in zip(patch_ids, cells)]

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        info['patch'] = self.patch_set.patches[info['patch_index']]  # kept once, not per placement
        return info

    def labels(self) -> np.ndarray:
        """The label of every sample, in order (for class balance checks)."""
        return np.array([self.get_data_info(i)['gt_label'] for i in range(len(self))], np.int64)
