"""Per-image counts: what a file keeps, how runs merge, how an empty pass gathers, and the
edges of the mIoU rule (a one-pixel class, no warning for an absent class).

Expectations are written out by hand; mutation testing (make mutation) showed these edges
unguarded.
"""
from __future__ import annotations

import os.path as osp
import warnings

import numpy as np
import pytest

from posattack.report.per_image import (PairedBootstrap, PerImageCounts, PerImageRecorder,
                                        miou_from_counts, per_image_path, resample_weights)


def _counts(images=('a.png', 'b.png'), keys=('clean', 'random/N=1/seed=0'), offset=0):
    n, regions, classes = len(images), ['full', 'left'], 3
    gt = (np.arange(n * 2 * classes, dtype=np.uint32).reshape(n, 2, classes) + 5)
    tp = {k: gt - np.uint32(i + offset) for i, k in enumerate(keys)}
    pred = {k: gt + np.uint32(i + 1) for i, k in enumerate(keys)}
    return PerImageCounts(list(images), regions, gt, tp, pred)


def test_a_saved_file_gives_back_every_array(tmp_path):
    counts = _counts()
    path = counts.save(str(tmp_path / 'per_image.npz'))
    loaded = PerImageCounts.load(path)
    assert loaded.images == ['a.png', 'b.png'] and loaded.regions == ['full', 'left']
    assert np.array_equal(loaded.gt, counts.gt)
    assert loaded.keys == ['clean', 'random/N=1/seed=0']
    for key in counts.keys:
        assert np.array_equal(loaded.tp[key], counts.tp[key])
        assert np.array_equal(loaded.pred[key], counts.pred[key])


def test_a_file_without_settings_keeps_empty_uint32_stacks(tmp_path):
    counts = PerImageCounts(['a.png'], ['full'], np.ones((1, 1, 2), np.uint32))
    path = counts.save(str(tmp_path / 'empty.npz'))
    with np.load(path) as data:
        assert data['tp'].shape == (0, 1, 1, 2) and data['tp'].dtype == np.uint32
        assert data['pred'].shape == (0, 1, 1, 2) and data['pred'].dtype == np.uint32
        assert data['keys'].shape == (0, )
    loaded = PerImageCounts.load(path)
    assert loaded.keys == [] and np.array_equal(loaded.gt, counts.gt)


def test_merged_adds_the_other_runs_settings_and_ours_win():
    ours = _counts(keys=('clean', 'targeted/overall/N=2'))
    theirs = _counts(keys=('clean', 'random/N=1/seed=0'), offset=1)
    merged = ours.merged(theirs)
    assert merged.images == ours.images and merged.regions == ours.regions
    assert merged.gt is ours.gt
    assert sorted(merged.keys) == ['clean', 'random/N=1/seed=0', 'targeted/overall/N=2']
    assert merged.tp['clean'] is ours.tp['clean']            # ours win
    assert merged.pred['clean'] is ours.pred['clean']
    assert merged.tp['random/N=1/seed=0'] is theirs.tp['random/N=1/seed=0']
    assert merged.pred['random/N=1/seed=0'] is theirs.pred['random/N=1/seed=0']
    # nothing to merge: this run as it is; an empty run: the other as it is
    assert ours.merged(None) is ours
    assert ours.merged(PerImageCounts(ours.images, ours.regions, ours.gt)) is ours
    assert PerImageCounts(ours.images, ours.regions, ours.gt).merged(theirs) is theirs


@pytest.mark.parametrize('change', ['images', 'regions', 'shape', 'labels'])
def test_merged_refuses_counts_of_another_dataset(change):
    ours = _counts()
    other = _counts(keys=('x', ))
    if change == 'images':
        other.images = ['a.png', 'c.png']
    elif change == 'regions':
        other.regions = ['full', 'right']
    elif change == 'shape':
        other.gt = np.concatenate([other.gt, other.gt], axis=2)
    else:
        other.gt = other.gt.copy()
        other.gt[1, 1, 2] += 1
    with pytest.raises(ValueError, match='belongs to another dataset'):
        ours.merged(other)


def test_recorder_stores_uint32_and_keeps_its_regions():
    masks_conf = np.zeros((3, 2, 2), np.int64)      # regions full, center, left (K = 2)
    masks_conf[:, 0, 0], masks_conf[:, 0, 1], masks_conf[:, 1, 1] = 4, 1, 3
    recorder = PerImageRecorder(['full', 'center', 'left'])
    recorder.add('clean', 'x.png', masks_conf)
    counts = recorder.gather(['clean'])
    assert counts.regions == ['full', 'center', 'left']
    for array in (counts.gt, counts.tp['clean'], counts.pred['clean']):
        assert array.dtype == np.uint32
    # gt rows: 5 and 3 labelled; tp: the diagonal 4 and 3; pred columns: 4 and 4
    assert counts.gt[0, 0].tolist() == [5, 3]
    assert counts.tp['clean'][0, 0].tolist() == [4, 3]
    assert counts.pred['clean'][0, 0].tolist() == [4, 4]


def test_a_pass_over_no_image_gathers_empty_counts():
    recorder = PerImageRecorder(['full', 'left', 'band_0'])
    counts = recorder.gather(['clean'])
    assert counts.images == [] and counts.regions == ['full', 'left']
    assert counts.gt.shape == (0, 2, 0) and counts.gt.dtype == np.uint32
    assert counts.tp['clean'].shape == (0, 2, 0) and counts.pred['clean'].shape == (0, 2, 0)


def test_bootstrap_defaults_and_its_resample_count():
    counts = _counts()
    boot = PairedBootstrap(counts)
    # the documented defaults: 2000 resamples, seed 0
    assert boot.num_resamples == 2000 and boot.seed == 0
    assert np.array_equal(boot.weights, resample_weights(2, 2000, 0))
    one = PairedBootstrap(counts, num_resamples=1, seed=3)
    assert one.num_resamples == 1 and one.seed == 3 and one.weights.shape == (1, 2)
    assert one.miou('clean', 'full')[1].shape == (1, )
    with pytest.raises(ValueError, match='>= 1 resample'):
        PairedBootstrap(counts, num_resamples=0)
    with pytest.raises(KeyError, match="region 'center' has no per-image counts"):
        boot.miou('clean', 'center')


def test_miou_edges_by_hand():
    # a class of one pixel, found: IoU 1 (its union is exactly 1); a class of 2 pixels,
    # one found and one extra predicted: 1 / 3
    assert miou_from_counts(np.array([1, 1]), np.array([1, 2]), np.array([1, 2])) == \
        pytest.approx(100 * (1 + 1 / 3) / 2)
    # a class absent from labels and predictions is left out, without a numpy warning
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert miou_from_counts(np.array([3, 0]), np.array([4, 0]), np.array([3, 0])) == \
            pytest.approx(75.0)
        assert np.isnan(miou_from_counts(np.zeros(2), np.zeros(2), np.zeros(2)))


def test_the_run_fingerprint_travels_with_the_file(tmp_path):
    counts = _counts()
    with_sha = PerImageCounts.load(counts.save(str(tmp_path / 'a.npz'), run_sha256='ab12'))
    assert with_sha.run_sha256 == 'ab12'
    assert PerImageCounts.load(counts.save(str(tmp_path / 'b.npz'))).run_sha256 is None
    assert per_image_path('work') == osp.join('work', 'per_image.npz')


@pytest.mark.parametrize('change', ['gt_2d', 'gt_images', 'pred_key', 'pred_shape'])
def test_counts_that_disagree_in_shape_are_refused(change):
    counts = _counts()
    if change == 'gt_2d':
        counts.gt = counts.gt[:, :, 0]
    elif change == 'gt_images':
        counts.gt, counts.images = counts.gt, counts.images + ['c.png']
    elif change == 'pred_key':
        counts.pred['other'] = counts.pred['clean']
    else:
        counts.pred['clean'] = counts.pred['clean'][:, :1]
    with pytest.raises(ValueError):
        counts.check_shapes()
