"""Shift consistency (ShiftConsistencyPairs -> ShiftPairTTAModel -> ShiftConsistencyMetric) on
toy segmentors whose Cons is known in advance.

Both toys are mmseg EncoderDecoders (SegDataPreProcessor, FCNHead that only reads its input
out through a 1x1 conv) with a registered test backbone:

- ``ShiftTestPixelwiseNet``: 1x1 convolutions only, so a pixel's label depends on that
  pixel alone. Two crops label every pixel they share alike: Cons = 100 for every shift.
- ``ShiftTestColumnBucketNet``: ignores the image; its label at crop column x is
  ``x // BUCKET``. Crops with left edges xa and xb label source column X as
  ``(X - xa) // BUCKET`` and ``(X - xb) // BUCKET``, so Cons is a count over the corners
  ``shift_origins`` draws, done here by hand.

They run the way tools/consistency.py runs them: mmseg's test dataloader with the views
transform appended, the TTA wrapper's test_step, an MMEngine Evaluator.
"""
from __future__ import annotations

import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from posattack.evaluation.regions import build_region_layout, validate_region_specs
from posattack.evaluation.shift_consistency import (ShiftConsistencyMetric, ShiftPairTTAModel,
                                                    pair_confusion)
from posattack.training.shift_crops import ShiftConsistencyPairs, overlap_slices, shift_origins

NUM_CLASSES = 19
SOURCE = (64, 128)  # the synthetic images (conftest.TINY_SIZE); Resize keeps them as they are
BUCKET = 8  # ColumnBucketNet: a crop at most 124 wide has buckets 0..15 < 19 classes
CLASSES = tuple(f'class{i}' for i in range(NUM_CLASSES))
PAPER_PREFIXES = ('', 'left.', 'right.', 'center.', 'periphery.')


# ----------------------------------------------------------------------------- toy segmentors
@MODELS.register_module(name='ShiftTestPixelwiseNet', force=True)
class PixelwiseNet(nn.Module):
    """1x1 convolutions, stride 1, no padding: exactly shift-equivariant."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, channels, 1), nn.ReLU(),
                                    nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return (self.layers(x), )


@MODELS.register_module(name='ShiftTestColumnBucketNet', force=True)
class ColumnBucketNet(nn.Module):
    """One-hot of the crop-local column bucket x // bucket, whatever the image."""

    def __init__(self, bucket: int = BUCKET, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.bucket, self.num_classes = bucket, num_classes

    def forward(self, x):
        n, _, height, width = x.shape
        buckets = torch.arange(width, device=x.device) // self.bucket
        onehot = F.one_hot(buckets, self.num_classes).t().to(x.dtype)  # (K, W)
        return (onehot[None, :, None, :].expand(n, -1, height, -1).contiguous(), )


def build_toy_segmentor(backbone: dict, channels: int) -> nn.Module:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    # a ConfigDict as from a config file: EncoderDecoder reads test_cfg.mode
    model = MODELS.build(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255),
        backbone=backbone,
        decode_head=dict(type='FCNHead', in_channels=channels, channels=channels, num_convs=0,
                         concat_input=False, kernel_size=1, in_index=0, dropout_ratio=0.1,
                         num_classes=NUM_CLASSES, norm_cfg=None, align_corners=False),
        train_cfg=dict(), test_cfg=dict(mode='whole')))
    return model.eval()


@pytest.fixture(scope='module')
def pixelwise_segmentor():
    return build_toy_segmentor(dict(type='ShiftTestPixelwiseNet', channels=8), channels=8)


@pytest.fixture(scope='module')
def column_segmentor():
    model = build_toy_segmentor(dict(type='ShiftTestColumnBucketNet'), channels=NUM_CLASSES)
    with torch.no_grad():  # the classifier passes the one-hot buckets through
        model.decode_head.conv_seg.weight.copy_(torch.eye(NUM_CLASSES)[:, :, None, None])
        model.decode_head.conv_seg.bias.zero_()
    return model


# ----------------------------------------------------------------------------- measuring
def measure(segmentor, cfg, max_shifts, trials=1, seed=0, regions=('paper', ), out_file=None):
    """(metrics, image basenames): the views, TTA model and metric as tools/consistency.py
    wires them, on the config's test set."""
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader.dataset.pipeline = list(cfg.test_dataloader.dataset.pipeline) + [
        dict(type='ShiftConsistencyPairs', max_shifts=list(max_shifts), trials=trials,
             seed=seed)]
    init_default_scope('mmseg')
    dataloader = Runner.build_dataloader(cfg.test_dataloader)
    model = ShiftPairTTAModel(module=segmentor).eval()
    evaluator = Evaluator(ShiftConsistencyMetric(regions=list(regions), out_file=out_file))
    evaluator.dataset_meta = dataloader.dataset.metainfo
    with torch.no_grad():
        for data in dataloader:
            evaluator.process(model.test_step(data), data)
    dataset = dataloader.dataset
    names = [osp.basename(dataset.get_data_info(i)['img_path']) for i in range(len(dataset))]
    return evaluator.evaluate(len(dataset)), names


def column_bucket_counts(names, max_shift, trials, seed, bucket=BUCKET, source=SOURCE):
    """By hand, per trial: {'full' | 'center' | 'periphery': [agreeing, overlap] pixels} of
    ColumnBucketNet, with the corners shift_origins draws for each image."""
    height, width = source
    crop_h, crop_w = height - max_shift, width - max_shift
    center = range(width // 4, (3 * width) // 4)  # posattack.evaluation.regions 'paper'
    counts = [{region: [0, 0] for region in ('full', 'center', 'periphery')}
              for _ in range(trials)]
    for name in names:
        corners = shift_origins(seed, name, max_shift, trials)
        for trial in range(trials):
            (ya, xa), (yb, xb) = corners[trial]
            rows = crop_h - abs(int(ya) - int(yb))
            for col in range(max(xa, xb), min(xa, xb) + crop_w):
                agree = (col - xa) // bucket == (col - xb) // bucket
                for region in ('full', 'center' if col in center else 'periphery'):
                    counts[trial][region][0] += rows * agree
                    counts[trial][region][1] += rows
    return counts


def percent(counts):
    agree, total = np.sum(counts, axis=0)
    return 100.0 * agree / total


# ----------------------------------------------------------------------------- the views
def test_views_are_crops_at_the_corners_shift_origins_draws():
    image = torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(3, 20, 30)
    sample = SegDataSample(metainfo=dict(img_path='/data/x/aachen_000001_leftImg8bit.png',
                                         img_shape=(20, 30), ori_shape=(20, 30)))
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, 20, 30, dtype=torch.uint8))
    views = ShiftConsistencyPairs(max_shifts=(2, 5), trials=2, seed=3).transform(
        dict(inputs=image, data_samples=sample))
    assert len(views['inputs']) == len(views['data_samples']) == 2 * 2 * 2
    order = []
    for crop, view in zip(views['inputs'], views['data_samples']):
        info = view.metainfo['shift_crop']
        s, trial, member = info['max_shift'], info['trial'], info['member']
        order.append((s, trial, member))
        y, x = shift_origins(3, 'aachen_000001_leftImg8bit.png', s, 2)[trial, member]
        assert info['origin'] == (y, x) and info['source_shape'] == (20, 30)
        assert torch.equal(crop, image[:, y:y + 20 - s, x:x + 30 - s])
        # mmseg's post-processing then returns crop-sized predictions
        assert view.ori_shape == view.img_shape == (20 - s, 30 - s)
        assert 'gt_sem_seg' not in view  # consistency compares predictions, not labels
    assert order == [(s, t, m) for s in (2, 5) for t in (0, 1) for m in (0, 1)]


def test_shift_origins_deterministic_in_range_and_seeded():
    corners = shift_origins(0, 'a.png', 8, 50)
    assert corners.shape == (50, 2, 2) and corners.dtype == np.int64
    assert corners.min() >= 0 and corners.max() <= 8
    assert len(np.unique(corners)) == 9  # 200 draws reach every corner coordinate 0..8
    assert np.array_equal(corners, shift_origins(0, 'a.png', 8, 50))
    assert not np.array_equal(corners, shift_origins(1, 'a.png', 8, 50))
    assert not np.array_equal(corners, shift_origins(0, 'b.png', 8, 50))
    # more trials extend the stream: trial t's corners do not depend on how many are drawn
    assert np.array_equal(shift_origins(0, 'a.png', 8, 1), corners[:1])


def test_overlap_slices_of_the_docstring_example():
    in_a, in_b, in_src = overlap_slices((0, 0), (1, 2), (4, 4))
    assert in_a == (slice(1, 4), slice(2, 4)) and in_b == (slice(0, 3), slice(0, 2))
    assert in_src == (slice(1, 4), slice(2, 4))
    with pytest.raises(ValueError, match='do not overlap'):
        overlap_slices((0, 0), (0, 4), (4, 4))


# ----------------------------------------------------------------------------- by hand
# Source 5x9, crops 4x8 at A=(0, 0) and B=(1, 1), labels x // 2 in each crop. They share
# source rows 1..3 and columns 1..7; per row (X: A's label, B's label):
#   X=1: 0,0 ok  X=2: 1,0  X=3: 1,1 ok  X=4: 2,1  X=5: 2,2 ok  X=6: 3,2  X=7: 3,3 ok
# -> 4 of 7 agree, times 3 rows: 12 of 21. 'paper' on width 9: center = columns 2..5
# (X=2..5: 2 of 4 agree -> 6 of 12), periphery = the shared X=1, 6, 7 (2 of 3 -> 6 of 9),
# left = 0..3 (X=1..3: 2 of 3 -> 6 of 9), right = 4..8 (X=4..7: 2 of 4 -> 6 of 12).
HAND_SOURCE = (5, 9)
HAND_A, HAND_B = (0, 0), (1, 1)
HAND_PRED = np.tile(np.arange(8) // 2, (4, 1))  # (4, 8): [0 0 1 1 2 2 3 3] on every row


def test_pair_confusion_by_hand():
    names = validate_region_specs(['paper'])
    assert names == ['full', 'left', 'right', 'center', 'periphery']
    layout = build_region_layout(['paper'], *HAND_SOURCE)
    conf = pair_confusion(torch.from_numpy(HAND_PRED), HAND_PRED, HAND_A, HAND_B, HAND_SOURCE,
                          layout, num_classes=4)
    assert conf.shape == (5, 4, 4)
    agree_total = {name: (int(np.trace(c)), int(c.sum())) for name, c in zip(names, conf)}
    assert agree_total == {'full': (12, 21), 'left': (6, 9), 'right': (6, 12),
                           'center': (6, 12), 'periphery': (6, 9)}
    # rows: A's label, columns: B's; 3 rows of each (A, B) pair listed above
    expected = np.zeros((4, 4), dtype=np.int64)
    for a, b in [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3)]:
        expected[a, b] = 3
    assert np.array_equal(conf[0], expected)


def test_metric_on_a_hand_made_pair():
    metric = ShiftConsistencyMetric(regions=['paper'])
    metric.dataset_meta = dict(classes=CLASSES)
    pair = dict(max_shift=1, trial=0, origin_a=HAND_A, origin_b=HAND_B,
                source_shape=HAND_SOURCE, pred_a=torch.from_numpy(HAND_PRED),
                pred_b=torch.from_numpy(HAND_PRED))
    metric.process({}, [dict(shift_pairs=[pair])])
    metrics = metric.compute_metrics(metric.results)
    assert metrics['Cons.1'] == 57.14  # 12 / 21
    assert metrics['center.Cons.1'] == 50.0 and metrics['periphery.Cons.1'] == 66.67
    assert metrics['left.Cons.1'] == 66.67 and metrics['right.Cons.1'] == 50.0
    assert metrics['periphery_minus_center.Cons.1'] == 16.67
    # IoU of B's labels against A's: classes 0 and 3 1/(1+2-1), classes 1 and 2 1/(2+2-1);
    # the 15 classes neither crop predicts are left out of the mean, as in mmseg
    assert metrics['agreement_mIoU.1'] == 41.67  # (1/2 + 1/3 + 1/3 + 1/2) / 4
    assert 'Cons.1.trial_std' not in metrics


# ----------------------------------------------------------------------------- toy models
def test_pixelwise_model_is_fully_consistent(pixelwise_segmentor, demo_cfg, tmp_path):
    # not trivially consistent: the model tells pixels apart
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(40, 60), ori_shape=(40, 60)))
    with torch.no_grad():
        labels = pixelwise_segmentor.test_step(dict(inputs=[image], data_samples=[sample]))
    assert len(labels[0].pred_sem_seg.data.unique()) >= 3

    out_file = str(tmp_path / 'details.json')
    metrics, names = measure(pixelwise_segmentor, demo_cfg, max_shifts=(4, 8),
                             out_file=out_file)
    assert len(names) == 4
    for s in (4, 8):
        for prefix in PAPER_PREFIXES:
            assert metrics[f'{prefix}Cons.{s}'] == 100.0, (prefix, s)
            assert metrics[f'{prefix}agreement_mIoU.{s}'] == 100.0, (prefix, s)
        assert metrics[f'periphery_minus_center.Cons.{s}'] == 0.0
    # ... and it scored every pixel both crops see, no more
    with open(out_file) as f:
        details = json.load(f)
    assert details['num_images'] == 4
    for s in (4, 8):
        counts = column_bucket_counts(names, s, trials=1, seed=0)[0]
        num_pixels = details['max_shifts'][str(s)]['num_pixels']
        assert num_pixels['full'] == counts['full'][1]
        assert num_pixels['center'] == counts['center'][1]


def test_column_bucket_model_scores_the_hand_count(column_segmentor, demo_cfg):
    metrics, names = measure(column_segmentor, demo_cfg, max_shifts=(4, 8), seed=0)
    for s in (4, 8):
        counts = column_bucket_counts(names, s, trials=1, seed=0)[0]
        full, center, periphery = (percent([counts[r]]) for r in ('full', 'center',
                                                                    'periphery'))
        assert full < 100  # the corners differ somewhere: a test that can fail
        assert metrics[f'Cons.{s}'] == pytest.approx(full, abs=0.005)
        assert metrics[f'center.Cons.{s}'] == pytest.approx(center, abs=0.005)
        assert metrics[f'periphery.Cons.{s}'] == pytest.approx(periphery, abs=0.005)
        assert metrics[f'periphery_minus_center.Cons.{s}'] == round(
            metrics[f'periphery.Cons.{s}'] - metrics[f'center.Cons.{s}'], 2)


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_metrics_other_seed_other_corners(column_segmentor, demo_cfg):
    first, names = measure(column_segmentor, demo_cfg, max_shifts=(8, ), seed=5)
    second, _ = measure(column_segmentor, demo_cfg, max_shifts=(8, ), seed=5)
    assert first == second
    other = [shift_origins(6, name, 8, 1) for name in names]
    assert any(not np.array_equal(shift_origins(5, name, 8, 1), corners)
               for name, corners in zip(names, other))
    # and the metric follows the corners of the seed it is given
    third, _ = measure(column_segmentor, demo_cfg, max_shifts=(8, ), seed=6)
    expected = percent([column_bucket_counts(names, 8, 1, seed=6)[0]['full']])
    assert third['Cons.8'] == pytest.approx(expected, abs=0.005)


def test_a_shift_scores_alike_with_or_without_other_shifts(column_segmentor, demo_cfg):
    alone, _ = measure(column_segmentor, demo_cfg, max_shifts=(8, ))
    together, _ = measure(column_segmentor, demo_cfg, max_shifts=(16, 8))
    assert alone and all(together[key] == value for key, value in alone.items())
    assert 'Cons.16' in together


def test_trials_report_their_spread(column_segmentor, demo_cfg):
    metrics, names = measure(column_segmentor, demo_cfg, max_shifts=(8, ), trials=3, seed=2)
    per_trial = column_bucket_counts(names, 8, trials=3, seed=2)
    trial_cons = [percent([counts['full']]) for counts in per_trial]
    assert np.std(trial_cons) > 0.1  # the trials differ, so the spread is worth checking
    assert metrics['Cons.8.trial_std'] == pytest.approx(np.std(trial_cons), abs=0.005)
    # Cons pools every trial's pixels
    assert metrics['Cons.8'] == pytest.approx(
        percent([counts['full'] for counts in per_trial]), abs=0.005)
    # trial 0 is the one pair a single-trial run draws
    single, _ = measure(column_segmentor, demo_cfg, max_shifts=(8, ), trials=1, seed=2)
    assert single['Cons.8'] == pytest.approx(trial_cons[0], abs=0.005)
    assert 'Cons.8.trial_std' not in single


def test_trial_spread_is_of_the_full_image_whatever_the_region_order(column_segmentor,
                                                                      demo_cfg):
    # border bands before 'paper' (as in --regions border paper): the whole-image region
    # 'full' comes from 'paper' and is not the first region of the metric
    regions = [dict(type='border', bands=2), 'paper']
    metrics, names = measure(column_segmentor, demo_cfg, max_shifts=(8, ), trials=3, seed=2,
                             regions=regions)
    trial_cons = [percent([c['full']]) for c in column_bucket_counts(names, 8, 3, seed=2)]
    assert metrics['Cons.8.trial_std'] == pytest.approx(np.std(trial_cons), abs=0.005)


# ----------------------------------------------------------------------------- bad input
def test_duplicate_or_bad_settings_are_refused():
    with pytest.raises(ValueError, match='distinct'):
        ShiftConsistencyPairs(max_shifts=(8, 8))
    with pytest.raises(ValueError, match='trials'):
        ShiftConsistencyPairs(trials=0)
    with pytest.raises(ValueError, match='max shift'):
        ShiftConsistencyPairs(max_shifts=(-1, ))


def test_a_shift_as_large_as_the_image_names_the_image_size():
    sample = SegDataSample(metainfo=dict(img_path='a.png'))
    with pytest.raises(ValueError, match='64x128'):
        ShiftConsistencyPairs(max_shifts=(64, )).transform(
            dict(inputs=torch.zeros(3, *SOURCE), data_samples=sample))


def test_metric_without_pairs_names_the_tta_model():
    metric = ShiftConsistencyMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(KeyError, match='ShiftPairTTAModel'):
        metric.process({}, [dict(img_path='a.png', pred_sem_seg=dict(data=torch.zeros(1, 4, 4)))])


def test_tta_model_without_views_names_the_transform(column_segmentor):
    model = ShiftPairTTAModel(module=column_segmentor)
    plain = SegDataSample(metainfo=dict(img_shape=(8, 8), ori_shape=(8, 8)))
    with pytest.raises(ValueError, match='ShiftConsistencyPairs'):
        model.test_step(dict(inputs=[[torch.zeros(3, 8, 8)]], data_samples=[[plain]]))
