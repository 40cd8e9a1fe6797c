"""FeatureSplit: the sweep's fast path gives exactly what mmseg's own test loop gives.

The expectation is independent of the split: mmseg's test loop (MMEngine Runner) on the same
checkpoint with posattack's ChannelRemovalHook, one Runner per setting.
"""
from __future__ import annotations

import pytest
import torch
from helpers import diversify, one_torch_thread, run_mmseg_test, save_checkpoint  # noqa: F401
from mmseg.structures import SegDataSample

from posattack.attack.feature_split import FeatureSplit, logits_to_labels
from posattack.channels import select_channels
from posattack.channels.layers import resolve_layer
from posattack.channels.ranking import ChannelRanking
from posattack.data.dataloader import build_test_dataloader
from posattack.models.builder import load_segmentor

NUM_TOTAL = 128  # channels of the demo backbone's last stage


@pytest.fixture
def checkpoint(tiny_segmentor, tmp_path):
    return save_checkpoint(diversify(tiny_segmentor), tmp_path / 'diverse.pth')


@pytest.fixture
def reversed_ranking(tmp_path):
    """A hand-made ranking: channel 127 first. Saved, because the hook reads a file."""
    ranking = ChannelRanking(layer='backbone:3', num_channels=NUM_TOTAL, method='manual',
                             num_images=None, orders={'overall': list(range(NUM_TOTAL))[::-1]})
    return ranking, str(ranking.save(tmp_path / 'reversed_ranking.json'))


def _split_predictions(split, dataloader, channels, ablation='zero', mean_values=None):
    """{img_path: (labels, logits)} from prefix once + predict_from, batch by batch.

    The logits are what mmseg's ``inference`` returned (before post-processing), recorded
    by wrapping the model's method, so exact and shortcut paths compare alike.
    """
    predictions = {}
    model = split.model
    inference = model.inference
    recorded = []
    model.inference = lambda *args: recorded.append(inference(*args)) or recorded[-1]
    try:
        with torch.no_grad():
            for batch in dataloader:
                data = model.data_preprocessor(batch, False)
                inputs, samples = data['inputs'], data['data_samples']
                feats = split.prefix(inputs)
                labels = split.predict_from(feats, inputs, samples, channels, ablation,
                                            mean_values)
                for i, (label, sample) in enumerate(zip(labels, samples)):
                    predictions[sample.img_path] = (label, recorded[-1][i])
    finally:
        del model.inference
    return predictions


SETTINGS = {
    'clean': (None, lambda ranking: []),
    'targeted': (dict(mode='targeted', num_channels=24, region='overall'),
                 lambda ranking: select_channels('targeted', NUM_TOTAL, ranking=ranking,
                                                 num_channels=24)),
    'random': (dict(mode='random', num_channels=24, seed=3),
               lambda ranking: select_channels('random', NUM_TOTAL, num_channels=24, seed=3)),
}


@pytest.mark.parametrize('name', list(SETTINGS))
def test_exact_fast_path_is_bit_identical_to_mmseg_test_loop(name, demo_cfg, checkpoint,
                                                             reversed_ranking):
    ranking, ranking_path = reversed_ranking
    hook, channels_of = SETTINGS[name]
    if hook is not None and hook['mode'] == 'targeted':
        hook = dict(hook, ranking=ranking_path)
    expected, _, _ = run_mmseg_test(demo_cfg, checkpoint, hook)

    model, cfg = load_segmentor(demo_cfg, checkpoint)
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
    assert split.fast and split.shortcut is None
    got = _split_predictions(split, build_test_dataloader(cfg, None, None), channels_of(ranking))

    assert sorted(got) == sorted(expected) and len(got) == 4
    for path, (labels, logits) in expected.items():
        assert torch.equal(got[path][0], labels), path
        assert torch.equal(got[path][1], logits), path
    # the model's predictions are varied, so agreement is not trivial
    assert len(torch.unique(torch.stack([labels for labels, _ in expected.values()]))) >= 4


@pytest.mark.parametrize('ablation', ['zero', 'mean'])
def test_linear_shortcut_agrees_with_exact(ablation, demo_cfg, tiny_segmentor, reversed_ranking):
    model = diversify(tiny_segmentor)
    ranking, _ = reversed_ranking
    dataloader = build_test_dataloader(demo_cfg, None, None)
    layer = resolve_layer(model, 'backbone:3')
    exact = FeatureSplit(model, layer, exact=True)
    fast = FeatureSplit(model, layer)
    # the ASPP branches that read the backbone output (1x1 and three dilated 3x3 convs)
    assert fast.shortcut is not None and len(fast.shortcut.convs) >= 4
    mean_values = torch.rand(NUM_TOTAL) if ablation == 'mean' else None

    clean = _split_predictions(exact, dataloader, [])
    for channels in (ranking.top('overall', 40), select_channels('random', NUM_TOTAL,
                                                                 num_channels=40, seed=1)):
        reference = _split_predictions(exact, dataloader, channels, ablation, mean_values)
        shortcut = _split_predictions(fast, dataloader, channels, ablation, mean_values)
        same_labels = total = 0
        for path, (labels, logits) in reference.items():
            assert torch.allclose(shortcut[path][1], logits, atol=1e-4, rtol=1e-4), path
            same_labels += int((shortcut[path][0] == labels).sum())
            total += labels.numel()
            assert not torch.equal(logits, clean[path][1])  # the removal did something
        assert same_labels / total >= 0.999


def test_fast_labels_equal_mmseg_postprocess(demo_cfg, tiny_segmentor):
    """logits_to_labels (the shortcut path's post-processing) gives mmseg's labels exactly,
    also with padding and a test-time flip recorded in the metainfo."""
    model = diversify(tiny_segmentor)
    torch.manual_seed(0)
    logits = torch.randn(3, 19, 20, 36)
    metas = [dict(ori_shape=(31, 47), img_shape=(20, 34), padding_size=[0, 2, 0, 0]),
             dict(ori_shape=(16, 32), img_shape=(20, 36), padding_size=[0, 0, 0, 0],
                  flip=True, flip_direction='horizontal'),
             # already at ori_shape: the resize that mmseg still runs is skipped
             dict(ori_shape=(20, 36), img_shape=(20, 36), padding_size=[0, 0, 0, 0])]
    samples = [SegDataSample(metainfo=meta) for meta in metas]
    ours = logits_to_labels(model, logits, samples)
    theirs = model.postprocess_result(logits.clone(), [SegDataSample(metainfo=m) for m in metas])
    for label, sample in zip(ours, theirs):
        assert label.shape == sample.pred_sem_seg.data[0].shape
        assert torch.equal(label, sample.pred_sem_seg.data[0])


def test_slow_path_gives_the_fast_path_answer(demo_cfg, tiny_segmentor):
    """'backbone.layer4' is the same tensor as 'backbone:3', but no indexed output: the
    split falls back to a hooked full forward per setting, and must agree."""
    model = diversify(tiny_segmentor)
    slow = FeatureSplit(model, resolve_layer(model, 'backbone.layer4'))
    fast = FeatureSplit(model, resolve_layer(model, 'backbone:3'), exact=True)
    assert not slow.fast and 'not an indexed backbone or neck output' in slow.why_slow
    assert fast.why_slow is None

    channels = select_channels('random', NUM_TOTAL, num_channels=30, seed=2)
    with torch.no_grad():
        for batch in build_test_dataloader(demo_cfg, None, None):
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            feats = fast.prefix(inputs)
            assert torch.equal(slow.attacked(slow.prefix(inputs)), fast.attacked(feats))
            expected = fast.predict_from(feats, inputs, samples, channels)
            got = slow.predict_full(inputs, samples, channels)
            for a, b in zip(got, expected):
                assert torch.equal(a, b)
    assert not model.backbone.layer4._forward_hooks  # the removal hook did not outlive it


def test_slide_inference_takes_the_slow_path(tiny_segmentor):
    tiny_segmentor.test_cfg = dict(mode='slide', crop_size=(32, 32), stride=(24, 24))
    split = FeatureSplit(tiny_segmentor, resolve_layer(tiny_segmentor, 'backbone:3'))
    assert not split.fast and split.shortcut is None
    assert "'slide'" in split.why_slow


def test_layer_index_out_of_range_names_the_valid_ones(tiny_segmentor):
    split = FeatureSplit(tiny_segmentor, resolve_layer(tiny_segmentor, 'backbone:7'))
    feats = split.prefix(torch.zeros(1, 3, 64, 128))
    with pytest.raises(IndexError, match=r'returns 4 tensors.*0\.\.3'):
        split.attacked(feats)


@pytest.mark.parametrize('align_corners', [False, True])
def test_fast_labels_equal_mmseg_postprocess_on_every_metainfo_variant(tiny_segmentor,
                                                                      align_corners):
    """Padding on every side (under either key mmseg reads), horizontal and vertical flips,
    a resize with and without align_corners, and a one-channel (sigmoid) head: mmseg's
    postprocess_result on the same logits and metainfo is the expectation."""
    model = diversify(tiny_segmentor)
    saved = model.align_corners, model.decode_head.threshold
    model.align_corners = align_corners
    model.decode_head.threshold = 0.3      # what a one-channel head thresholds its sigmoid at
    torch.manual_seed(1)
    logits = torch.randn(4, 19, 22, 30)
    metas = [dict(ori_shape=(37, 51), img_shape=(19, 27), padding_size=[1, 2, 0, 3]),
             dict(ori_shape=(20, 26), img_shape=(20, 26), img_padding_size=[3, 1, 2, 0],
                  padding_size=[0, 0, 0, 0]),
             dict(ori_shape=(17, 25), img_shape=(22, 30), padding_size=[0, 0, 0, 0],
                  flip=True, flip_direction='vertical'),
             dict(ori_shape=(22, 30), img_shape=(22, 30), flip=True,
                  flip_direction='horizontal')]
    try:
        for batch in (logits, logits[:, :1]):      # 19 classes; one sigmoid channel
            ours = logits_to_labels(model, batch, [SegDataSample(metainfo=m) for m in metas])
            theirs = model.postprocess_result(batch.clone(),
                                              [SegDataSample(metainfo=m) for m in metas])
            assert len(ours) == len(metas)
            for label, sample, meta in zip(ours, theirs, metas):
                assert tuple(label.shape) == meta['ori_shape']
                assert torch.equal(label, sample.pred_sem_seg.data[0])
    finally:
        model.align_corners, model.decode_head.threshold = saved
