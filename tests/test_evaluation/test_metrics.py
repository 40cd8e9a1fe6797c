"""RegionIoUMetric and its helpers: hand-computed scores per region type, partitions,
agreement with mmseg's IoUMetric, NaN handling, JSON output and build-time errors."""
from __future__ import annotations

import json
import os
import warnings

import cv2
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from mmseg.registry import METRICS
from mmseg.structures import SegDataSample

from posattack.evaluation.metric import RegionIoUMetric, region_confusion, summarize_confusion
from posattack.evaluation.regions import build_region_masks


def sample(pred, gt, img_path='img.png'):
    data_sample = SegDataSample(metainfo=dict(img_path=img_path, ori_shape=pred.shape))
    data_sample.pred_sem_seg = PixelData(data=torch.as_tensor(pred, dtype=torch.int64)[None])
    data_sample.gt_sem_seg = PixelData(data=torch.as_tensor(gt, dtype=torch.int64)[None])
    return data_sample


def evaluate(metric_cfg, samples, classes, batch_size=2):
    """Run a metric the MMEngine way: Evaluator.process per batch, then evaluate(size)."""
    evaluator = Evaluator(METRICS.build(metric_cfg))  # mmseg's registry: no default scope needed
    evaluator.dataset_meta = dict(classes=tuple(classes))
    for start in range(0, len(samples), batch_size):
        evaluator.process(data_samples=samples[start:start + batch_size], data_batch=None)
    return evaluator.evaluate(len(samples))


def random_samples(count, height, width, num_classes, seed, agreement=0.7):
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        gt = rng.integers(0, num_classes, (height, width))
        gt[rng.random((height, width)) < 0.1] = 255
        pred = np.where(rng.random((height, width)) < agreement, np.where(gt == 255, 0, gt),
                        rng.integers(0, num_classes, (height, width)))
        samples.append(sample(pred, gt, f'img_{index}.png'))
    return samples


def naive_region_confusion(pred, gt, masks, num_classes, ignore_index=255):
    """Independent expectation: loop over regions and pixels."""
    conf = np.zeros((len(masks), num_classes, num_classes), np.int64)
    for r, mask in enumerate(masks):
        for y, x in zip(*np.nonzero(mask)):
            if gt[y, x] != ignore_index:
                conf[r, gt[y, x], pred[y, x]] += 1
    return conf


# -------------------------------------------------------------- hand-computed: paper
# 2x4 image, classes 0/1/2 (2 never appears). Columns: left 0-1, right 2-3, center 1-2,
# periphery 0 and 3. One ignored pixel at (1, 1).
PAPER_GT = np.array([[0, 0, 1, 1], [0, 255, 1, 1]])
PAPER_PRED = np.array([[0, 1, 1, 1], [0, 0, 1, 0]])
PAPER_EXPECTED = {
    # region: ([[gt0->p0, gt0->p1], [gt1->p0, gt1->p1]], mIoU, mAcc, aAcc)
    'full': ([[2, 1], [1, 3]], (50 + 60) / 2, (200 / 3 + 75) / 2, 500 / 7),
    'left': ([[2, 1], [0, 0]], (200 / 3 + 0) / 2, 200 / 3, 200 / 3),
    'right': ([[0, 0], [1, 3]], (0 + 75) / 2, 75, 75),
    'center': ([[0, 1], [0, 2]], (0 + 200 / 3) / 2, (0 + 100) / 2, 200 / 3),
    'periphery': ([[2, 0], [1, 1]], (200 / 3 + 50) / 2, (100 + 50) / 2, 75),
}


def test_paper_regions_by_hand():
    names, masks = build_region_masks('paper', 2, 4)
    conf = region_confusion(PAPER_PRED, PAPER_GT, masks, num_classes=3)
    assert conf.dtype == np.int64 and conf.shape == (5, 3, 3)
    flat, per_class = summarize_confusion(conf, names, ['a', 'b', 'c'])
    for index, name in enumerate(names):
        expected_conf, miou, macc, aacc = PAPER_EXPECTED[name]
        np.testing.assert_array_equal(conf[index, :2, :2], expected_conf, err_msg=name)
        assert conf[index, 2].sum() == conf[index, :, 2].sum() == 0
        key = '' if name == 'full' else f'{name}.'
        assert flat[key + 'mIoU'] == round(miou, 2), name
        assert flat[key + 'mAcc'] == round(macc, 2), name
        assert flat[key + 'aAcc'] == round(aacc, 2), name
        assert np.isnan(per_class[name]['c']['IoU'])  # absent class: NaN, left out of mean
    assert flat['periphery_minus_center.mIoU'] == round(round((200 / 3 + 50) / 2, 2)
                                                        - round(100 / 3, 2), 2)
    # left: class b predicted once, never in gt -> IoU 0, Acc NaN
    assert per_class['left']['b']['IoU'] == 0.0 and np.isnan(per_class['left']['b']['Acc'])


# ---------------------------------------------------- hand-computed: other region types
def five_by_five_case():
    """gt all class 0 except the center pixel (class 1); pred wrong on 4 outer pixels."""
    gt = np.zeros((5, 5), np.int64)
    gt[2, 2] = 1
    pred = gt.copy()
    pred[0, 0] = pred[0, 4] = pred[4, 0] = pred[4, 4] = 1
    return pred, gt


def scores(specs, pred, gt, num_classes=2):
    names, masks = build_region_masks(specs, *gt.shape)
    conf = region_confusion(pred, gt, masks, num_classes)
    flat, _ = summarize_confusion(conf, names, [str(k) for k in range(num_classes)])
    return flat


def test_border_and_frame_by_hand():
    pred, gt = five_by_five_case()
    flat = scores(dict(type='border', bands=3), pred, gt)
    # band_0, the outer ring: 16 gt-0 pixels, 12 right -> IoU0 12/16, IoU1 0/4
    assert flat['band_0.mIoU'] == 37.5 and flat['band_0.aAcc'] == 75.0
    assert flat['band_0.mAcc'] == 75.0  # class 1 absent from gt: Acc NaN, left out
    assert flat['band_1.mIoU'] == 100.0 and flat['band_2.mIoU'] == 100.0
    flat = scores(['full', dict(type='frame', thickness=1)], pred, gt)
    assert flat['frame.mIoU'] == 37.5 and flat['interior.mIoU'] == 100.0
    # full: IoU0 = 20 / 24, IoU1 = 1 / 5
    assert flat['mIoU'] == round((2000 / 24 + 20) / 2, 2)


def test_grid_and_halves_by_hand():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 2, 2],
                   [2, 2, 2, 2]])
    pred = gt.copy()
    pred[0, 0] = 1  # cell_0_0 and top-left
    pred[3, 3] = 0  # cell_1_1 and bottom-right
    flat = scores(dict(type='grid', rows=2, cols=2), pred, gt, num_classes=3)
    # cell_0_0: gt 0 x4, pred 0 x3 + 1 x1 -> IoU0 3/4, IoU1 0/1 -> 37.5
    assert flat['cell_0_0.mIoU'] == 37.5
    assert flat['cell_0_1.mIoU'] == 100.0 and flat['cell_1_0.mIoU'] == 100.0
    # cell_1_1: gt 2 x4, pred 2 x3 + 0 x1 -> IoU2 3/4, IoU0 0/1
    assert flat['cell_1_1.mIoU'] == 37.5 and flat['cell_1_1.aAcc'] == 75.0
    flat = scores('halves', pred, gt, num_classes=3)
    # top: gt0 x4 (3 right, 1 -> class 1), gt1 x4 -> IoU0 3/4, IoU1 4/5
    assert flat['top.mIoU'] == round((75 + 80) / 2, 2)
    # left: gt0 x4 (3 right), gt2 x4 -> IoU0 3/4, IoU1 0/1, IoU2 1
    assert flat['left.mIoU'] == round((75 + 0 + 100) / 3, 2)
    assert flat['bottom.aAcc'] == 87.5 and flat['right.aAcc'] == 87.5


def test_mask_image_region_by_hand(tmp_path):
    pred, gt = five_by_five_case()
    roi = np.zeros((5, 5), np.uint8)
    roi[0, :] = 255  # top row: one wrong corner pair, 3 right
    path = str(tmp_path / 'roi.png')
    cv2.imwrite(path, roi)
    flat = scores(['full', dict(type='mask', path=path, name='top_row')], pred, gt)
    # top row: gt0 x5, pred0 x3, pred1 x2 -> IoU0 3/5, IoU1 0/2
    assert flat['top_row.mIoU'] == 30.0 and flat['top_row.aAcc'] == 60.0


# ------------------------------------------------------------- implementation checks
REGION_SET = ['paper', dict(type='border', bands=4), dict(type='grid', rows=3, cols=3),
              dict(type='frame', thickness=0.1), dict(type='halves', prefix='h_')]


def test_fast_paths_equal_a_naive_loop():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 5, (24, 40))
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 5, (24, 40))
    names, masks = build_region_masks(REGION_SET, 24, 40)
    expected = naive_region_confusion(pred, gt, masks, 5)
    pieces = region_confusion(pred, gt, masks, 5)  # cached masks: the piece path
    direct = region_confusion(pred, gt, masks.copy(), 5)  # a plain array: the direct path
    tensors = region_confusion(torch.from_numpy(pred)[None], torch.from_numpy(gt).to(torch.uint8),
                               masks, 5)
    np.testing.assert_array_equal(pieces, expected)
    np.testing.assert_array_equal(direct, expected)
    np.testing.assert_array_equal(tensors, expected)
    # an ignore_index inside the class range takes the general branch
    gt_no_255 = np.where(gt == 255, 4, gt)
    np.testing.assert_array_equal(region_confusion(pred, gt_no_255, masks, 5, ignore_index=2),
                                  naive_region_confusion(pred, gt_no_255, masks, 5, 2))


def test_regions_partition_the_full_confusion():
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 19, (64, 128))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 19, (64, 128))
    names, masks = build_region_masks(REGION_SET, 64, 128)
    conf = dict(zip(names, region_confusion(pred, gt, masks, 19)))
    full = conf['full']
    assert full.sum() == (gt != 255).sum()
    np.testing.assert_array_equal(conf['center'] + conf['periphery'], full)
    np.testing.assert_array_equal(conf['left'] + conf['right'], full)
    np.testing.assert_array_equal(conf['h_top'] + conf['h_bottom'], full)
    np.testing.assert_array_equal(conf['frame'] + conf['interior'], full)
    np.testing.assert_array_equal(sum(conf[f'band_{k}'] for k in range(4)), full)
    np.testing.assert_array_equal(
        sum(conf[f'cell_{r}_{c}'] for r in range(3) for c in range(3)), full)


def test_label_errors_are_clear():
    masks = build_region_masks('paper', 2, 4)[1]
    good = np.zeros((2, 4), np.int64)
    with pytest.raises(ValueError, match='pred holds labels outside'):
        region_confusion(good + 3, good, masks, 3)
    with pytest.raises(ValueError, match='gt holds label 7, outside'):
        region_confusion(good, good + 7, masks, 3)
    with pytest.raises(ValueError, match='gt holds label -1, outside'):
        region_confusion(good, good - 1, masks, 3, ignore_index=1)
    with pytest.raises(ValueError, match='differ in size'):
        region_confusion(np.zeros((2, 5), np.int64), good, masks, 3)
    with pytest.raises(TypeError, match='integer class indices'):
        region_confusion(good.astype(float), good, masks, 3)


# ------------------------------------------------------------------ the metric itself
CLASSES = [f'class_{k}' for k in range(6)]


@pytest.mark.parametrize('iou_metrics, nan_to_num', [
    (['mIoU'], None), (['mIoU'], 0), (['mIoU', 'mDice', 'mFscore'], None), (['mDice'], None)])
def test_full_image_equals_mmseg_iou_metric(iou_metrics, nan_to_num):
    # class 5 never appears: NaN in both metrics (or 0 with nan_to_num)
    samples = random_samples(5, 32, 48, num_classes=5, seed=3)
    common = dict(iou_metrics=iou_metrics, nan_to_num=nan_to_num)
    mmseg_scores = evaluate(dict(type='IoUMetric', **common), samples, CLASSES)
    ours = evaluate(dict(type='RegionIoUMetric', regions=REGION_SET, **common), samples, CLASSES)
    assert set(mmseg_scores) <= set(ours)
    assert ('periphery_minus_center.mIoU' in ours) == ('mIoU' in iou_metrics)
    for key, value in mmseg_scores.items():
        # mmseg sums float32 histograms; both round to 2 decimals
        assert abs(ours[key] - float(value)) <= 0.01 + 1e-9, key
    # unrounded, ours sits within mmseg's rounding of it
    names = build_region_masks(['paper'], 32, 48)[0]
    conf = sum(region_confusion(s.pred_sem_seg.data, s.gt_sem_seg.data,
                                build_region_masks(['paper'], 32, 48)[1], 6) for s in samples)
    exact, _ = summarize_confusion(conf, names, CLASSES, iou_metrics, nan_to_num, decimals=None)
    for key, value in mmseg_scores.items():
        assert abs(exact[key] - float(value)) <= 0.005 + 1e-4, key


def test_demo_model_outputs_score_like_mmseg(demo_cfg, tiny_segmentor):
    from mmengine.runner import Runner
    dataloader = Runner.build_dataloader(demo_cfg.test_dataloader)
    classes = dataloader.dataset.metainfo['classes']
    outputs = []
    with torch.no_grad():
        for batch in dataloader:
            outputs.extend(tiny_segmentor.test_step(batch))
    assert outputs[0].pred_sem_seg.shape == tuple(outputs[0].ori_shape)
    mmseg_scores = evaluate(dict(type='IoUMetric'), outputs, classes)
    ours = evaluate(dict(type='RegionIoUMetric', regions=REGION_SET), outputs, classes)
    for key in ('mIoU', 'mAcc', 'aAcc'):
        assert abs(ours[key] - float(mmseg_scores[key])) <= 0.01 + 1e-9, key


def test_returned_keys_and_out_file(tmp_path):
    samples = random_samples(3, 16, 32, num_classes=6, seed=4)
    out_file = tmp_path / 'scores' / 'regions.json'
    metric_cfg = dict(type='RegionIoUMetric', regions=['paper', dict(type='border', bands=2)],
                      out_file=str(out_file))
    flat = evaluate(metric_cfg, samples, CLASSES)
    expected_keys = ['aAcc', 'mIoU', 'mAcc']
    for region in ('left', 'right', 'center', 'periphery', 'band_0', 'band_1'):
        expected_keys += [f'{region}.aAcc', f'{region}.mIoU', f'{region}.mAcc']
    assert list(flat) == expected_keys + ['periphery_minus_center.mIoU']
    assert all(isinstance(value, float) for value in flat.values())
    assert flat['periphery_minus_center.mIoU'] == round(flat['periphery.mIoU']
                                                        - flat['center.mIoU'], 2)
    saved = json.loads(out_file.read_text())
    assert saved['metrics'] == flat
    assert saved['num_images'] == 3
    assert saved['regions']['center']['mIoU'] == flat['center.mIoU']
    assert saved['regions']['full']['num_pixels'] == sum(
        int((s.gt_sem_seg.data != 255).sum()) for s in samples)
    assert saved['regions']['band_0']['num_pixels'] + saved['regions']['band_1']['num_pixels'] \
        == saved['regions']['full']['num_pixels']
    assert set(saved['regions']['left']['per_class']['class_0']) == {'IoU', 'Acc'}
    assert os.listdir(out_file.parent) == ['regions.json']  # no temporary file left


def test_full_region_is_added_and_prefix_applies():
    samples = random_samples(2, 16, 32, num_classes=6, seed=5)
    flat = evaluate(dict(type='RegionIoUMetric', regions=dict(type='grid', rows=1, cols=2),
                         prefix='region'), samples, CLASSES)
    assert set(flat) == {f'region/{key}' for key in
                         ['aAcc', 'mIoU', 'mAcc', 'cell_0_0.aAcc', 'cell_0_0.mIoU',
                          'cell_0_0.mAcc', 'cell_0_1.aAcc', 'cell_0_1.mIoU', 'cell_0_1.mAcc']}


def test_ignore_only_region_gives_nan_without_warnings(tmp_path):
    gt = np.zeros((8, 16), np.int64)
    gt[:, :8] = 255  # the whole left half is ignored
    pred = np.zeros((8, 16), np.int64)
    out_file = tmp_path / 'nan.json'
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        flat = evaluate(dict(type='RegionIoUMetric', out_file=str(out_file)),
                        [sample(pred, gt)], CLASSES)
    assert np.isnan(flat['left.mIoU']) and np.isnan(flat['left.aAcc'])
    assert flat['right.mIoU'] == 100.0 and flat['mIoU'] == 100.0
    saved = json.loads(out_file.read_text())  # strict JSON: NaN written as null
    assert saved['regions']['left']['mIoU'] is None
    assert saved['regions']['left']['per_class']['class_0']['IoU'] is None


def test_output_dir_writes_predictions(tmp_path):
    pred = np.arange(32).reshape(4, 8) % 6
    metric = METRICS.build(dict(type='RegionIoUMetric', output_dir=str(tmp_path / 'preds'),
                                format_only=True))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process(None, [sample(pred, pred, img_path='/data/frankfurt_0001.png').to_dict()])
    written = cv2.imread(str(tmp_path / 'preds' / 'frankfurt_0001.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, pred)
    assert metric.results == [] and metric.compute_metrics([]) == {}


@pytest.mark.parametrize('kwargs, message', [
    (dict(regions=['paper', dict(type='frame', thickness=1.5)]), 'must lie in (0, 1)'),
    (dict(regions=dict(type='border', bands=0)), 'must be a positive integer'),
    (dict(regions=dict(type='grid', rows=-3)), 'must be a positive integer'),
    (dict(regions='center'), 'Known types: border, frame, full, grid, halves, mask, paper'),
    (dict(regions=[dict(type='frame', thickness=0.1), dict(type='frame', thickness=0.2)]),
     "Region name 'frame' is made twice, with different masks"),
    (dict(regions=dict(type='mask', path='missing.png', name='m')), 'does not exist'),
    (dict(iou_metrics=['mIoU', 'mAP']), 'not supported'),
    (dict(out_file='scores.txt'), 'must end with .json'),
])
def test_bad_config_fails_at_build(kwargs, message):
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as error:
        METRICS.build(dict(type='RegionIoUMetric', **kwargs))
    assert message in str(error.value)


def test_mask_size_mismatch_fails_on_first_image(tmp_path):
    path = str(tmp_path / 'mask.png')
    cv2.imwrite(path, np.ones((8, 8), np.uint8))
    metric = METRICS.build(dict(type='RegionIoUMetric',
                                regions=['paper', dict(type='mask', path=path, name='m')]))
    metric.dataset_meta = dict(classes=CLASSES)
    image = np.zeros((16, 32), np.int64)
    with pytest.raises(ValueError, match=r'is 8x8 but the evaluated image \(ori_shape\) is 16x32'):
        metric.process(None, [sample(image, image)])


def test_missing_classes_meta_is_explained():
    metric = RegionIoUMetric()
    image = np.zeros((4, 8), np.int64)
    with pytest.raises(RuntimeError, match='dataset_meta'):
        metric.process(None, [sample(image, image)])
