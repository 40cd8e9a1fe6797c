"""run_sweep: one prefix per batch, many settings, each scored exactly as mmseg's test loop
with ChannelRemovalHook and RegionIoUMetric would score it; nothing kept per image."""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
import torch
from helpers import diversify, one_torch_thread, run_mmseg_test, save_checkpoint  # noqa: F401

from posattack.attack.feature_split import FeatureSplit
from posattack.attack.settings import AttackSetting
from posattack.attack.sweep import SweepState, run_sweep
from posattack.channels import channel_means
from posattack.channels.layers import resolve_layer
from posattack.channels.ranking import ChannelRanking
from posattack.data.dataloader import build_test_dataloader
from posattack.identify import identify_channels
from posattack.models.builder import load_segmentor

NUM_TOTAL = 128
NUM_CLASSES = 19
REGIONS = ['paper', dict(type='border', bands=2)]
NUM_REGIONS = 7  # full, left, right, center, periphery, band_0, band_1
CONF_SHAPE = (NUM_REGIONS, NUM_CLASSES, NUM_CLASSES)
CLEAN = AttackSetting('clean')
TARGETED = AttackSetting('targeted', 24, attack_region='overall')
RANDOM = AttackSetting('random', 24, seed=1)


@pytest.fixture
def checkpoint(tiny_segmentor, tmp_path):
    return save_checkpoint(diversify(tiny_segmentor), tmp_path / 'diverse.pth')


def _sweep(split, dataloader, settings, **kwargs):
    """run_sweep plus the settings each pass reported finished."""
    passes = []
    state = run_sweep(split, dataloader, settings, NUM_TOTAL, REGIONS, NUM_CLASSES,
                      on_pass_done=lambda state, done: passes.append([s.key for s in done]),
                      progress=False, **kwargs)
    return state, passes


def test_confusions_equal_region_iou_metric_in_mmseg_test_loop(demo_cfg, checkpoint, tmp_path):
    model, cfg = load_segmentor(demo_cfg, checkpoint)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
    dataloader = build_test_dataloader(cfg, None, None)
    state, passes = _sweep(split, dataloader, [CLEAN, TARGETED, RANDOM], identify=True)

    # pass 1 identifies and evaluates what needs no ranking; pass 2 the targeted setting
    assert passes == [[CLEAN.key, RANDOM.key], [TARGETED.key]]
    assert state.num_images == 4
    assert set(state.confusions) == {CLEAN.key, TARGETED.key, RANDOM.key}

    # the on-the-fly ranking is the flip-difference ranking of identify_channels
    reference = identify_channels(model, dataloader, layer='backbone:3')
    assert state.ranking.num_images == 4
    assert state.ranking.orders == reference.orders
    for key, scores in reference.scores.items():
        np.testing.assert_allclose(state.ranking.scores[key], scores, rtol=1e-5, atol=1e-7)

    ranking_path = str(state.ranking.save(tmp_path / 'sweep_ranking.json'))
    hooks = {CLEAN.key: None,
             TARGETED.key: dict(mode='targeted', ranking=ranking_path, num_channels=24),
             RANDOM.key: dict(mode='random', num_channels=24, seed=1)}
    for key, hook in hooks.items():
        _, confusion, _ = run_mmseg_test(demo_cfg, checkpoint, hook, regions=REGIONS)
        assert confusion.shape == state.confusions[key].shape == CONF_SHAPE
        assert np.array_equal(state.confusions[key], confusion), key
    assert not np.array_equal(state.confusions[CLEAN.key], state.confusions[TARGETED.key])


def test_given_ranking_evaluates_everything_in_one_pass(demo_cfg, tiny_segmentor):
    model = diversify(tiny_segmentor)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
    dataloader = build_test_dataloader(demo_cfg, None, None)
    identified, _ = _sweep(split, dataloader, [CLEAN, TARGETED, RANDOM], identify=True)

    calls = []
    original_prefix = split.prefix
    split.prefix = lambda inputs: calls.append(len(inputs)) or original_prefix(inputs)
    given, passes = _sweep(split, dataloader, [CLEAN, TARGETED, RANDOM],
                           ranking=identified.ranking)
    assert passes == [[CLEAN.key, TARGETED.key, RANDOM.key]]
    assert calls == [2, 2]  # one prefix per batch: no flips, no second pass
    assert given.ranking is identified.ranking
    for key, confusion in identified.confusions.items():
        assert np.array_equal(given.confusions[key], confusion), key


def test_slow_path_sweep_equals_fast_path_sweep(demo_cfg, tiny_segmentor):
    model = diversify(tiny_segmentor)
    dataloader = build_test_dataloader(demo_cfg, None, None)
    fast = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
    slow = FeatureSplit(model, resolve_layer(model, 'backbone.layer4'))  # the same tensor
    assert not slow.fast
    expected, _ = _sweep(fast, dataloader, [CLEAN, TARGETED, RANDOM], identify=True)
    got, _ = _sweep(slow, dataloader, [CLEAN, TARGETED, RANDOM], identify=True)
    assert got.ranking.orders == expected.ranking.orders
    for key, confusion in expected.confusions.items():
        assert np.array_equal(got.confusions[key], confusion), key


def test_mean_ablation_uses_dataset_means_like_the_hook(demo_cfg, checkpoint):
    model, cfg = load_segmentor(demo_cfg, checkpoint)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
    dataloader = build_test_dataloader(cfg, None, None)
    state, passes = _sweep(split, dataloader, [CLEAN, RANDOM], ablation='mean')

    assert passes == [[CLEAN.key], [RANDOM.key]]  # the means exist only after pass 1
    expected_means = channel_means(model, 'backbone:3', dataloader)
    torch.testing.assert_close(state.mean_values, expected_means, rtol=1e-6, atol=1e-7)

    hook = dict(mode='random', num_channels=24, seed=1, ablation='mean', mean_num_images=None)
    _, confusion, _ = run_mmseg_test(demo_cfg, checkpoint, hook, regions=REGIONS)
    assert np.array_equal(state.confusions[RANDOM.key], confusion)


class _RepeatedLoader:
    """The same collated batch ``times`` times: a dataset of any length, no decoding."""

    def __init__(self, batch, times):
        self.batch, self.times = batch, times
        self.dataset = range(times * len(batch['inputs']))

    def __iter__(self):
        return (self.batch for _ in range(self.times))

    def __len__(self):
        return self.times


def _image_sized_tensors(shape) -> int:
    return sum(1 for obj in gc.get_objects()
               if issubclass(type(obj), torch.Tensor) and tuple(obj.shape[-2:]) == shape)


def test_memory_stays_flat_as_the_dataset_grows(demo_cfg, tiny_segmentor):
    model = diversify(tiny_segmentor)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'))
    batch = next(iter(build_test_dataloader(demo_cfg, None, None)))
    settings = [CLEAN, TARGETED, RANDOM]
    ranking = ChannelRanking(layer='backbone:3', num_channels=NUM_TOTAL, method='manual',
                             num_images=None, orders={'overall': list(range(NUM_TOTAL))})

    def measure(times):
        live = []
        tracemalloc.start()
        try:
            state = run_sweep(split, _RepeatedLoader(batch, times), settings, NUM_TOTAL, REGIONS,
                              NUM_CLASSES, ranking=ranking, progress=False,
                              # while the pass still runs: what does it hold on to?
                              on_pass_done=lambda *_: live.append(_image_sized_tensors((64, 128))))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return state, peak, live

    small, small_peak, small_live = measure(1)
    large, large_peak, large_live = measure(4)

    assert large.num_images == 4 * small.num_images == 8
    # the state is one (R, K, K) confusion per setting, whatever the number of images
    assert set(vars(large)) == {f.name for f in SweepState.__dataclass_fields__.values()}
    assert sorted(large.confusions) == sorted(s.key for s in settings)
    for confusion in large.confusions.values():
        assert confusion.shape == CONF_SHAPE and confusion.dtype == np.int64
    assert large_live == small_live  # no label map, logit or image kept per batch
    # one label map is 64 KiB; keeping one per image and setting would add > 1 MiB here
    assert large_peak - small_peak < 256 * 1024, (small_peak, large_peak)
    # the same batch four times over: exactly four times the counts
    for key, confusion in small.confusions.items():
        assert np.array_equal(large.confusions[key], 4 * confusion)


def test_bad_calls_fail_clearly(demo_cfg, tiny_segmentor):
    split = FeatureSplit(tiny_segmentor, resolve_layer(tiny_segmentor, 'backbone:3'))
    dataloader = build_test_dataloader(demo_cfg, None, 2)
    with pytest.raises(ValueError, match='targeted settings need a ranking'):
        run_sweep(split, dataloader, [CLEAN, TARGETED], NUM_TOTAL, REGIONS, NUM_CLASSES,
                  progress=False)
    with pytest.raises(ValueError, match='has 128 channels but the sweep was set up for 64'):
        run_sweep(split, dataloader, [CLEAN], 64, REGIONS, NUM_CLASSES, progress=False)
    empty = _RepeatedLoader(next(iter(dataloader)), 0)
    with pytest.raises(ValueError, match='no images'):
        run_sweep(split, empty, [CLEAN], NUM_TOTAL, REGIONS, NUM_CLASSES, progress=False)


def test_gaussian_noise_ablation_reads_the_dataset_std_like_the_hook(demo_cfg, checkpoint):
    from posattack.channels import channel_statistics
    model, cfg = load_segmentor(demo_cfg, checkpoint)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
    dataloader = build_test_dataloader(cfg, None, None)
    clean, _ = _sweep(split, dataloader, [CLEAN, RANDOM])
    state, passes = _sweep(split, dataloader, [CLEAN, RANDOM], ablation='gaussian_noise')

    assert passes == [[CLEAN.key], [RANDOM.key]]  # the std exists only after pass 1
    expected = channel_statistics(model, 'backbone:3', dataloader)
    torch.testing.assert_close(state.mean_values.mean, expected.mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(state.mean_values.std, expected.std, rtol=1e-4, atol=1e-6)
    assert np.array_equal(state.confusions[CLEAN.key], clean.confusions[CLEAN.key])
    # noise at each channel's own scale moves predictions, but differently from zeroing
    assert not np.array_equal(state.confusions[RANDOM.key], clean.confusions[RANDOM.key])


def test_sweep_identifies_with_any_registered_method(demo_cfg, checkpoint):
    """The sweep knows methods only through their interface: a method registered here (rank
    by pooled mean, no views) is driven like the flip difference."""
    from posattack.channels.ranking import order_by_score
    from posattack.identify import (IDENTIFICATION_METHODS, IdentificationMethod,
                                    register_identification_method)

    @register_identification_method('pooled_mean_for_test', force=True)
    class PooledMean(IdentificationMethod):
        def __init__(self, num_channels=None):
            super().__init__(num_channels)
            self.sums, self.seen = torch.zeros(num_channels, dtype=torch.float64), 0

        @property
        def count(self):
            return self.seen

        def observe(self, features, view_features):
            assert view_features == []
            self.sums += features.double().mean(dim=(2, 3)).sum(0)
            self.seen += features.shape[0]

        def all_reduce(self):
            return self

        def to_ranking(self, layer, model_info=None):
            scores = (self.sums / self.seen).tolist()
            return ChannelRanking(layer=layer, num_channels=len(scores), method=self.name,
                                  num_images=self.seen,
                                  orders={'overall': order_by_score(scores)},
                                  scores={'overall': scores})

    try:
        model, cfg = load_segmentor(demo_cfg, checkpoint)
        split = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
        dataloader = build_test_dataloader(cfg, None, None)
        state, _ = _sweep(split, dataloader, [CLEAN, TARGETED], identify=True,
                          identification_method='pooled_mean_for_test')
        means = channel_means(model, 'backbone:3', dataloader).double()
        assert state.ranking.method == 'pooled_mean_for_test'
        assert state.ranking.orders['overall'][:5] == \
            torch.argsort(means, descending=True)[:5].tolist()
        with pytest.raises(ValueError, match='Unknown identification method'):
            _sweep(split, dataloader, [CLEAN, TARGETED], identify=True,
                   identification_method='no_such_method')
    finally:
        IDENTIFICATION_METHODS.module_dict.pop('pooled_mean_for_test')
