"""The synthetic generator writes real Cityscapes files that mmseg and cityscapesScripts-style
tools read, with labels that follow the official table and a street-scene structure."""
from __future__ import annotations

import filecmp
import glob
import hashlib
import importlib.util
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO_ROOT

from posattack.data.synthetic import (generate_cityscapes, render_street_scene_with_instances,
                                      scene_rng)

# Written out here from cityscapesScripts' helpers/labels.py, independently of
# posattack/data/cityscapes_labels.py, so that a typo in either one fails the test.
OFFICIAL_ID_TO_TRAINID = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255,
    11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8,
    22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16,
    32: 17, 33: 18,
}
OFFICIAL_VOID_COLOURS = {0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0), 3: (0, 0, 0), 4: (0, 0, 0),
                         5: (111, 74, 0), 6: (81, 0, 81), 9: (250, 170, 160),
                         10: (230, 150, 140), 14: (180, 165, 180), 15: (150, 100, 100),
                         16: (150, 120, 90), 18: (153, 153, 153), 29: (0, 0, 90),
                         30: (0, 0, 110)}
IMAGE_NAME = re.compile(r'^(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$')
GT_SUFFIXES = ('_gtFine_labelIds.png', '_gtFine_labelTrainIds.png', '_gtFine_color.png',
               '_gtFine_instanceIds.png')
# cityscapesScripts' hasInstances column: person, rider, car, truck, bus, caravan, trailer,
# train, motorcycle, bicycle.
OFFICIAL_INSTANCE_IDS = (24, 25, 26, 27, 28, 29, 30, 31, 32, 33)


def _official_colour(label_id, palette):
    """Colour of a labelId: mmseg's CityscapesDataset palette for evaluated classes (an
    independent copy of the official colours), the table above for void ones."""
    train_id = OFFICIAL_ID_TO_TRAINID[label_id]
    return tuple(palette[train_id]) if train_id != 255 else OFFICIAL_VOID_COLOURS[label_id]


def _all_files(root):
    return sorted(osp.relpath(p, root) for p in glob.glob(osp.join(root, '**', '*.png'),
                                                          recursive=True))


def _image_paths(root, split):
    return sorted(glob.glob(osp.join(root, 'leftImg8bit', split, '*', '*_leftImg8bit.png')))


def _gt_path(image_path, suffix):
    return image_path.replace(os.sep + 'leftImg8bit' + os.sep, os.sep + 'gtFine' + os.sep) \
        .replace('_leftImg8bit.png', suffix)


def _read(path, flags=cv2.IMREAD_UNCHANGED):
    array = cv2.imread(path, flags)
    assert array is not None, f'unreadable PNG {path}'
    return array


@pytest.fixture(scope='module')
def val20_root(tmp_path_factory):
    """20 val scenes at the default demo size, as a modest stand-in for the demo split."""
    root = tmp_path_factory.mktemp('val20')
    info = generate_cityscapes(root, num_train=0, num_val=20, size=(128, 256), seed=0)
    return root, info


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first, second, other = tmp_path / 'a', tmp_path / 'b', tmp_path / 'c'
    generate_cityscapes(first, 2, 2, size=(64, 128), seed=3)
    generate_cityscapes(second, 2, 2, size=(64, 128), seed=3)
    generate_cityscapes(other, 2, 2, size=(64, 128), seed=4)
    files = _all_files(first)
    assert len(files) == 4 * 5  # 4 images, each with 4 gtFine files
    assert files == _all_files(second) == _all_files(other)
    for name in files:
        assert filecmp.cmp(first / name, second / name, shallow=False), name
    differing = [name for name in files
                 if not filecmp.cmp(first / name, other / name, shallow=False)]
    assert len(differing) == len(files)


def test_image_does_not_depend_on_split_size(tmp_path):
    generate_cityscapes(tmp_path / 'small', 1, 1, size=(64, 128), seed=0)
    generate_cityscapes(tmp_path / 'large', 3, 1, size=(64, 128), seed=0)
    first = _image_paths(tmp_path / 'small', 'train')[0]
    same = first.replace(str(tmp_path / 'small'), str(tmp_path / 'large'))
    assert filecmp.cmp(first, same, shallow=False)


def test_cityscapes_file_layout(synthetic_root):
    for split in ('train', 'val'):
        images = _image_paths(synthetic_root, split)
        assert len(images) == 4
        for path in images:
            match = IMAGE_NAME.match(osp.basename(path))
            assert match, f'{osp.basename(path)} does not follow the Cityscapes pattern'
            assert osp.basename(osp.dirname(path)) == match['city']  # {split}/{city}/{city}_...
            assert match['frame'] == '000019'
            for suffix in GT_SUFFIXES:
                gt = _gt_path(path, suffix)
                assert osp.isfile(gt), f'missing {gt}'
                assert osp.basename(gt) == f'{match["city"]}_{match["seq"]}_000019{suffix}'
    train_cities = {osp.basename(p) for p in glob.glob(osp.join(synthetic_root, 'leftImg8bit',
                                                                'train', '*'))}
    val_cities = {osp.basename(p) for p in glob.glob(osp.join(synthetic_root, 'leftImg8bit',
                                                              'val', '*'))}
    assert train_cities.isdisjoint(val_cities)  # as in Cityscapes, a city is in one split


def test_labels_follow_official_table(synthetic_root):
    from mmseg.datasets import CityscapesDataset
    palette = CityscapesDataset.METAINFO['palette']
    for split in ('train', 'val'):
        for path in _image_paths(synthetic_root, split):
            image = _read(path)
            label_ids = _read(_gt_path(path, '_gtFine_labelIds.png'))
            train_ids = _read(_gt_path(path, '_gtFine_labelTrainIds.png'))
            colour = _read(_gt_path(path, '_gtFine_color.png'))
            assert image.shape == (64, 128, 3) and image.dtype == np.uint8
            assert label_ids.shape == train_ids.shape == (64, 128)
            assert colour.shape == (64, 128, 4)  # RGBA, as cityscapesScripts writes it
            assert set(np.unique(train_ids)) <= set(range(19)) | {255}
            assert set(np.unique(label_ids)) <= set(OFFICIAL_ID_TO_TRAINID)
            for label_id in np.unique(label_ids):
                where = label_ids == label_id
                assert np.all(train_ids[where] == OFFICIAL_ID_TO_TRAINID[label_id]), label_id
                rgb = _official_colour(int(label_id), palette)
                bgra = (rgb[2], rgb[1], rgb[0], 255)
                assert np.all(colour[where] == bgra), (label_id, np.unique(colour[where],
                                                                           axis=0))


def test_some_pixels_are_void(synthetic_root):
    train_ids = [_read(_gt_path(p, '_gtFine_labelTrainIds.png'))
                 for p in _image_paths(synthetic_root, 'val')]
    label_ids = [_read(_gt_path(p, '_gtFine_labelIds.png'))
                 for p in _image_paths(synthetic_root, 'val')]
    for train, ids in zip(train_ids, label_ids):
        assert (train == 255).any()
        assert set(np.unique(ids[train == 255])) <= set(range(7))  # void ids only
        assert (ids[-1] == 1).all()  # the ego-vehicle bonnet covers the bottom row


def test_mmseg_cityscapes_dataset_reads_it(synthetic_root, demo_cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    dataset = DATASETS.build(demo_cfg.val_dataloader.dataset)
    assert len(dataset) == 4
    for index in range(len(dataset)):
        sample = dataset[index]
        inputs, data_sample = sample['inputs'], sample['data_samples']
        assert tuple(inputs.shape) == (3, 64, 128)
        gt = data_sample.gt_sem_seg.data.numpy()[0]
        expected = _read(data_sample.seg_map_path)
        assert data_sample.seg_map_path.endswith('_gtFine_labelTrainIds.png')
        np.testing.assert_array_equal(gt, expected)
    train_dataset = DATASETS.build(demo_cfg.train_dataloader.dataset)
    assert len(train_dataset) == 4


def test_instance_ids_follow_cityscapes(val20_root):
    """`_instanceIds`: 16-bit, labelId * 1000 + k (k = 0, 1, ...) on classes with instances,
    the labelId elsewhere, as in the real dataset."""
    root, _ = val20_root
    instances = 0
    for path in _image_paths(root, 'val'):
        label = _read(_gt_path(path, '_gtFine_labelIds.png'))
        ids = _read(_gt_path(path, '_gtFine_instanceIds.png'))
        assert ids.dtype == np.uint16 and ids.shape == label.shape
        thing = np.isin(label, OFFICIAL_INSTANCE_IDS)
        np.testing.assert_array_equal(ids[~thing], label[~thing])
        np.testing.assert_array_equal(ids[thing] // 1000, label[thing])
        for class_id in np.unique(label[thing]):
            numbers = np.unique(ids[label == class_id] % 1000)
            assert numbers.tolist() == list(range(len(numbers)))  # 0..n-1, none skipped
            instances += len(numbers)
    assert instances >= 20  # cars and persons in 20 scenes, most scenes have several


def test_mmseg_cityscapes_metric_runs_on_it(synthetic_root, tmp_path, monkeypatch):
    """mmseg's own CityscapesMetric (cityscapesScripts' evaluation, iIoU included) reads
    the synthetic gtFine folder; ground truth as the prediction scores 100."""
    import cityscapesscripts  # noqa: F401  (requirements.txt: never skipped)
    from mmengine.structures import PixelData
    from mmseg.evaluation import CityscapesMetric
    from mmseg.structures import SegDataSample
    if not hasattr(np, 'in1d'):  # numpy >= 2.4 removed it; cityscapesScripts' iIoU calls it
        monkeypatch.setattr(np, 'in1d', _in1d, raising=False)
    metric = CityscapesMetric(output_dir=str(tmp_path / 'preds'), keep_results=True)
    for path in _image_paths(synthetic_root, 'val'):
        train_ids = _read(_gt_path(path, '_gtFine_labelTrainIds.png')).astype(np.int64)
        prediction = np.where(train_ids == 255, 0, train_ids)  # void pixels are not scored
        sample = SegDataSample(metainfo=dict(img_path=path, seg_map_path=_gt_path(
            path, '_gtFine_labelTrainIds.png')))
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(prediction)[None])
        metric.process({}, [sample.to_dict()])
    scores = metric.compute_metrics(metric.results)
    assert scores['averageScoreCategories'] == pytest.approx(1.0)
    assert scores['averageScoreInstCategories'] == pytest.approx(1.0)  # iIoU: instanceIds


def _in1d(values, test_values, assume_unique=False, invert=False):
    """numpy's removed in1d (a flat np.isin), for cityscapesScripts under numpy >= 2.4."""
    return np.isin(np.asarray(values).ravel(), test_values, assume_unique=assume_unique,
                   invert=invert)


def test_val_split_covers_at_least_12_classes(val20_root):
    root, info = val20_root
    present = set()
    for path in _image_paths(root, 'val'):
        present |= set(np.unique(_read(_gt_path(path, '_gtFine_labelTrainIds.png'))).tolist())
    present.discard(255)
    assert len(present) >= 12, sorted(present)
    assert len(info['classes_present']['val']) == len(present)


def _mean_position(label_maps, train_id):
    rows, cols = [], []
    for labels in label_maps:
        y, x = np.nonzero(labels == train_id)
        rows.append(y)
        cols.append(x)
    return np.concatenate(rows).mean(), np.concatenate(cols).mean()


def test_street_structure_and_ambiguous_looks(val20_root):
    root, _ = val20_root
    paths = _image_paths(root, 'val')
    labels = [_read(_gt_path(p, '_gtFine_labelTrainIds.png')) for p in paths]
    width = labels[0].shape[1]
    road, sidewalk, building, wall, terrain, sky = 0, 1, 2, 3, 9, 10
    assert _mean_position(labels, sky)[0] < _mean_position(labels, building)[0] \
        < _mean_position(labels, road)[0]
    # Sidewalk and buildings lie on the right, terrain and walls (of the same looks) on the left.
    assert _mean_position(labels, sidewalk)[1] > 0.6 * width
    assert _mean_position(labels, building)[1] > 0.6 * width
    assert _mean_position(labels, terrain)[1] < 0.4 * width
    assert _mean_position(labels, wall)[1] < 0.4 * width
    # Sky and road look alike within an image, so does sidewalk and terrain: only position
    # tells them apart.
    for path, label in zip(paths, labels):
        image = _read(path).astype(np.float32)
        for first, second in ((sky, road), (sidewalk, terrain)):
            if (label == first).sum() > 50 and (label == second).sum() > 50:
                gap = np.abs(image[label == first].mean(0) - image[label == second].mean(0))
                assert gap.max() < 25, (path, first, second, gap)


def test_objects_shrink_toward_the_horizon(val20_root):
    root, _ = val20_root
    bottoms, heights = [], []
    for path in _image_paths(root, 'val'):
        labels = _read(_gt_path(path, '_gtFine_labelTrainIds.png'))
        for class_id in (11, 13):  # person, car
            count, _, stats, _ = cv2.connectedComponentsWithStats(
                (labels == class_id).astype(np.uint8), connectivity=4)
            for top, height in stats[1:, [cv2.CC_STAT_TOP, cv2.CC_STAT_HEIGHT]]:
                bottoms.append(top + height)
                heights.append(height)
    assert len(heights) >= 20
    assert np.corrcoef(bottoms, heights)[0, 1] > 0.5


def test_regeneration_replaces_earlier_files(tmp_path):
    generate_cityscapes(tmp_path, 3, 2, size=(64, 128), seed=0)
    generate_cityscapes(tmp_path, 1, 1, size=(64, 128), seed=0)
    assert len(_image_paths(tmp_path, 'train')) == 1
    assert len(_image_paths(tmp_path, 'val')) == 1


def test_refuses_foreign_directory_and_bad_arguments(tmp_path):
    (tmp_path / 'precious.txt').write_text('user data')
    with pytest.raises(FileExistsError, match='not written by generate_cityscapes'):
        generate_cityscapes(tmp_path, 1, 1, size=(64, 128))
    assert (tmp_path / 'precious.txt').read_text() == 'user data'
    with pytest.raises(ValueError, match='too small'):
        generate_cityscapes(tmp_path / 'new', 1, 1, size=(8, 8))
    with pytest.raises(ValueError, match='num_train'):
        generate_cityscapes(tmp_path / 'new', -1, 1)
    with pytest.raises(ValueError, match='at least one image'):
        generate_cityscapes(tmp_path / 'new', 0, 0)


def test_command_line_tool(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('make_synthetic_cityscapes', osp.join(
        REPO_ROOT, 'tools', 'dataset_converters', 'make_synthetic_cityscapes.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'cli'
    assert tool.main([str(out), '--num-train', '2', '--num-val', '1', '--size', '64', '128',
                      '--seed', '5']) == 0
    assert len(_image_paths(out, 'train')) == 2 and len(_image_paths(out, 'val')) == 1
    assert _read(_image_paths(out, 'val')[0]).shape == (64, 128, 3)
    (tmp_path / 'foreign').mkdir()
    (tmp_path / 'foreign' / 'x').write_text('x')
    assert tool.main([str(tmp_path / 'foreign')]) == 2
    assert 'not written by generate_cityscapes' in capsys.readouterr().err


def test_side_free_scenes_put_each_class_on_both_sides_with_its_own_look(tmp_path):
    """--side-free: sidewalk/terrain and building/wall are found on either side (about as
    often), so a horizontal flip preserves labels; their looks differ (the verges' colours,
    the facades' heights), so a network can still tell them apart without position."""
    info = generate_cityscapes(tmp_path, num_train=0, num_val=40, size=(128, 256), seed=3,
                               side_free=True)
    assert info['side_free'] is True
    paths = _image_paths(tmp_path, 'val')
    labels = [_read(_gt_path(p, '_gtFine_labelTrainIds.png')) for p in paths]
    width = labels[0].shape[1]
    sidewalk, building, wall, terrain = 1, 2, 3, 9
    for class_id in (sidewalk, terrain, building, wall):
        left = sum(int((label[:, :width // 2] == class_id).sum()) for label in labels)
        right = sum(int((label[:, width // 2:] == class_id).sum()) for label in labels)
        # The default scenes put over 90% of each on one side; here neither side dominates.
        assert 0.25 < left / (left + right) < 0.75, (class_id, left, right)
    colour_gaps, wall_tops, building_tops = [], [], []
    for path, label in zip(paths, labels):
        image = _read(path).astype(np.float32)[..., ::-1]  # RGB
        if (label == sidewalk).sum() > 50 and (label == terrain).sum() > 50:
            # terrain is greener than sidewalk, relative to red
            green_minus_red = [image[label == c][:, 1].mean() - image[label == c][:, 0].mean()
                               for c in (terrain, sidewalk)]
            colour_gaps.append(green_minus_red[0] - green_minus_red[1])
        for class_id, tops in ((wall, wall_tops), (building, building_tops)):
            rows = np.nonzero((label == class_id).any(axis=1))[0]
            if rows.size:
                tops.append(rows.min())
    assert len(colour_gaps) >= 5 and min(colour_gaps) > 10
    # walls are low, buildings tall: buildings reach higher up the image
    assert np.median(building_tops) < np.median(wall_tops) - 5


def test_side_free_leaves_the_default_scenes_alone():
    """The option draws its random numbers after the default scene's, so default data sets
    (and every result measured on them) keep their bytes: the digest below was computed with
    the generator as it was before side-free scenes existed."""
    digest, side_free = hashlib.sha256(), hashlib.sha256()
    for index in range(3):
        for array in render_street_scene_with_instances(scene_rng(5, 'val', index), 64, 128):
            digest.update(array.tobytes())
        for array in render_street_scene_with_instances(scene_rng(5, 'val', index), 64, 128,
                                                        side_free=True):
            side_free.update(array.tobytes())
    assert digest.hexdigest() == ('ac5450cac326ef6bb238cd6ee67ef192'
                                  '800b59be412403e641a0f59806d81042')
    assert side_free.hexdigest() != digest.hexdigest()


@pytest.mark.slow  # two scenes at 1024x2048: about 3 s
def test_all_classes_at_full_cityscapes_size_has_every_train_class(tmp_path):
    """--all-classes at Cityscapes' own 1024x2048: each image holds all 19 train classes
    (read back from the files, through the official labelId -> trainId table written out
    above), and the instance ids count the new vehicles and riders one by one."""
    info = generate_cityscapes(tmp_path / 'full', num_train=0, num_val=2, size=(1024, 2048),
                               seed=0, all_classes=True)
    assert info['classes_present']['val'] == [
        'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
        'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
        'bus', 'train', 'motorcycle', 'bicycle']
    to_train = np.full(256, 255, np.uint8)
    for label_id, train_id in OFFICIAL_ID_TO_TRAINID.items():
        to_train[label_id] = train_id
    for path in _image_paths(tmp_path / 'full', 'val'):
        label_ids = _read(_gt_path(path, '_gtFine_labelIds.png'))
        assert label_ids.shape == (1024, 2048)
        assert set(np.unique(to_train[label_ids])) - {255} == set(range(19)), path
        instance_ids = _read(_gt_path(path, '_gtFine_instanceIds.png'))
        for label_id in (25, 27, 28, 31, 32, 33):  # rider, truck, bus, train, moto, bicycle
            assert (instance_ids == label_id * 1000).any(), (path, label_id)


def test_all_classes_leaves_the_default_scenes_alone():
    """Like side-free scenes, the extra objects come after the default scene's draws: the
    default bytes are pinned in test_side_free_leaves_the_default_scenes_alone; here the
    option changes the scene and adds the classes the default lacks."""
    default = render_street_scene_with_instances(scene_rng(5, 'val', 0), 128, 256)
    extended = render_street_scene_with_instances(scene_rng(5, 'val', 0), 128, 256,
                                                  all_classes=True)
    assert not np.array_equal(default[1], extended[1])
    rare = {25, 27, 28, 31, 32}  # rider, truck, bus, train, motorcycle
    assert not rare & set(np.unique(default[1]).tolist())
    assert rare <= set(np.unique(extended[1]).tolist())
