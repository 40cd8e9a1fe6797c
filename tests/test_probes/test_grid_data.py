"""Grid data: patches placed in grid cells, Cityscapes crops with known majority classes
(hand-made scenes, the hand_cityscapes fixture), patch folders, bad input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers import one_torch_thread  # noqa: F401  (one_torch_thread: a fixture)

import posattack.probes  # noqa: F401 - registers GAPNet, PermuteNet, GridPatchDataset, ...
from posattack.probes.grid_data import (GridPatchDataset, PackGridInputs, PlacePatchInGrid,
                                        cell_names, crop_cityscapes_patches, load_patch_folder)

# Every test here builds mmseg modules by their registered names.
pytestmark = pytest.mark.usefixtures('mmseg_scope')


# ----------------------------------------------------------------------------- grid data
def test_place_patch_in_grid_by_hand():
    patch = np.zeros((2, 2, 3), np.uint8)
    patch[..., 0], patch[..., 1], patch[..., 2] = 10, 20, 30
    patch[0, 0] = (50, 60, 70)
    place = PlacePatchInGrid(mean=(10, 20, 30), std=(2, 4, 5))
    out = place(dict(patch=patch, cell=5, grid_size=3, cell_size=4))  # row 1, col 2
    canvas = out['img']
    assert canvas.shape == (12, 12, 3) and canvas.dtype == np.float32
    # centred in cell (1, 2): rows 4+1..4+2, cols 8+1..8+2; (50-10)/2, (60-20)/4, (70-30)/5
    assert canvas[5, 9].tolist() == [20.0, 10.0, 8.0]
    assert np.count_nonzero(canvas) == 3  # everything else normalises to exactly zero
    bgr = PlacePatchInGrid(mean=(30, 20, 10), std=(5, 4, 2), to_bgr=True)(
        dict(patch=patch, cell=5, grid_size=3, cell_size=4))['img']
    assert bgr[5, 9].tolist() == [8.0, 10.0, 20.0]
    packed = PackGridInputs()(dict(out, gt_label=5))
    assert packed['inputs'].shape == (3, 12, 12) and packed['data_samples'] == 5
    with pytest.raises(ValueError, match='does not fit a grid cell'):
        place(dict(patch=np.zeros((5, 5, 3), np.uint8), cell=0, grid_size=3, cell_size=4))




def test_cityscapes_crops_carry_their_majority_class(hand_cityscapes):
    patches = crop_cityscapes_patches(hand_cityscapes, 'train', patch_size=16)
    # scene 0: 2 rows x 4 crops: road road veg veg / road road veg car; scene 1: 8 x sky
    # (the half-ignored crop is still sky: 128 of 256 pixels >= 50 %)
    assert patches.labels.tolist() == [0, 0, 8, 8, 0, 0, 8, 13] + [10] * 8
    assert patches.patches.shape == (16, 16, 16, 3)
    assert patches.patches[7, 0, 15].tolist() == [130, 65, 7]  # car pixel in RGB order
    assert len(patches.class_names) == 19 and patches.class_names[13] == 'car'

    chosen = crop_cityscapes_patches(hand_cityscapes, 'train', patch_size=8, crop_size=16,
                                     classes=['car', 'road'], min_class_fraction=0.75)
    assert chosen.labels.tolist() == [1, 1, 1, 1, 0] and chosen.patches.shape[1:] == (8, 8, 3)
    assert chosen.class_names == ['car', 'road']
    strict = crop_cityscapes_patches(hand_cityscapes,
                                     'train',
                                     patch_size=16,
                                     min_class_fraction=0.6)
    assert len(strict) == 15  # the half-ignored crop is dropped
    balanced = crop_cityscapes_patches(hand_cityscapes, 'train', 16, max_patches_per_class=2)
    assert sorted(balanced.labels.tolist()) == [0, 0, 8, 8, 10, 10, 13]


def test_grid_dataset_location_and_classification_labels(hand_cityscapes):
    location = GridPatchDataset(grid_size=3, patch_size=16, cityscapes_root=hand_cityscapes,
                                placements_per_patch=9)
    assert len(location) == 16 * 9
    assert location.metainfo['classes'] == tuple(cell_names(3))
    assert location.metainfo['classes'][5] == 'cell_1_2' and location.metainfo['task'] == 'location'
    assert np.bincount(location.labels()).tolist() == [16] * 9  # every cell equally often
    for index in (0, 37, 143):
        sample = location[index]
        label = sample['data_samples']
        row, col = divmod(label, 3)
        mask = sample['inputs'].abs().sum(0) > 0
        assert mask.shape == (48, 48)
        rows, cols = torch.nonzero(mask, as_tuple=True)  # patch pixels lie inside its cell
        assert rows.min() >= 16 * row and rows.max() < 16 * (row + 1)
        assert cols.min() >= 16 * col and cols.max() < 16 * (col + 1)

    every_cell = GridPatchDataset(grid_size=2, patch_size=16, cityscapes_root=hand_cityscapes,
                                  placements_per_patch='all')
    assert every_cell.labels().tolist() == [0, 1, 2, 3] * 16

    classification = GridPatchDataset(grid_size=2, patch_size=16, task='classification',
                                      cityscapes_root=hand_cityscapes, classes=['road', 'car'])
    assert classification.metainfo['classes'] == ('road', 'car')
    assert classification.labels().tolist() == [0, 0, 0, 0, 1]


def test_patch_folders(tmp_path):
    for name, colour in (('cats', 40), ('dogs', 200)):
        (tmp_path / 'labelled' / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / 'labelled' / name / f'{i}.png'),
                        np.full((20, 24, 3), colour + i, np.uint8))
    patches = load_patch_folder(tmp_path / 'labelled', patch_size=8)
    assert patches.class_names == ['cats', 'dogs'] and patches.labels.tolist() == [0, 0, 1, 1]
    assert patches.patches.shape == (4, 8, 8, 3) and patches.patches[3, 0, 0, 0] == 201
    dataset = GridPatchDataset(grid_size=2, patch_size=8, cell_size=10, task='classification',
                               patch_dir=str(tmp_path / 'labelled'))
    assert dataset.metainfo['classes'] == ('cats', 'dogs') and dataset[0]['inputs'].shape == (3, 20,
                                                                                              20)

    (tmp_path / 'flat').mkdir()
    cv2.imwrite(str(tmp_path / 'flat' / 'a.jpg'), np.zeros((9, 9, 3), np.uint8))
    assert GridPatchDataset(grid_size=2, patch_size=8,
                            patch_dir=str(tmp_path / 'flat'))[0]['inputs'].shape == (3, 16, 16)
    with pytest.raises(ValueError, match='classification task needs labelled patches'):
        GridPatchDataset(grid_size=2, patch_size=8, task='classification',
                         patch_dir=str(tmp_path / 'flat'))


@pytest.mark.parametrize('kwargs, message', [
    (dict(grid_size=1), 'grid_size must be an integer >= 2'),
    (dict(grid_size=2.5), 'grid_size must be an integer >= 2'),
    (dict(patch_size=20, cell_size=16), 'patch_size 20 is larger than the grid cell'),
    (dict(task='depth'), "Unknown task 'depth'"),
    (dict(placements_per_patch=0), 'placements_per_patch must be a positive integer'),
    (dict(patch_dir='EMPTY'), 'holds no images'),
    (dict(patch_dir='MISSING'), 'Patch folder not found'),
    (dict(patch_dir='MIXED'), 'mixes images'),
    (dict(cityscapes_root=None), 'Give exactly one patch source'),
    (dict(classes=['road', 'spaceship']), "unknown: \\['spaceship'\\]"),
    (dict(classes=['car'], min_class_fraction=1.0), 'No crop of 16x16'),
])
def test_grid_dataset_bad_input(kwargs, message, hand_cityscapes, tmp_path):
    (tmp_path / 'EMPTY').mkdir()
    (tmp_path / 'MIXED' / 'cls').mkdir(parents=True)
    for path in (tmp_path / 'MIXED' / 'a.png', tmp_path / 'MIXED' / 'cls' / 'b.png'):
        cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    arguments = dict(grid_size=3, patch_size=16, cityscapes_root=str(hand_cityscapes))
    arguments.update(kwargs)
    if isinstance(arguments.get('patch_dir'), str):
        arguments['patch_dir'] = str(tmp_path / arguments['patch_dir'])
        arguments.pop('cityscapes_root')
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        GridPatchDataset(**arguments)
