"""Prefix replay at its edges: resized outputs, the mean ablation, bit-identity in exact mode,
which recorded calls it replays (hand-made call lists) and what a copy of a record is.

The expectation is the plain slow path: a hooked full forward (FeatureSplit.predict_full:
ChannelRemoval around mmseg's predict) on the same model.
"""
from __future__ import annotations

from collections import namedtuple
from contextlib import contextmanager

import pytest
import torch
from helpers import diversify, one_torch_thread  # noqa: F401 - fixture
from mmseg.structures import SegDataSample

from posattack.attack.feature_split import FeatureSplit
from posattack.attack.prefix_replay import PrefixReplaySplit, _Call, _copy, outermost_calls_before
from posattack.channels.layers import resolve_layer

HEIGHT, WIDTH = 64, 128


@pytest.fixture
def model(tiny_segmentor):
    return diversify(tiny_segmentor)


def _samples(count, ori_shape=(HEIGHT, WIDTH)):
    samples = []
    for _ in range(count):
        sample = SegDataSample()
        sample.set_metainfo(dict(img_shape=(HEIGHT, WIDTH), ori_shape=ori_shape,
                                 pad_shape=(HEIGHT, WIDTH)))
        samples.append(sample)
    return samples


def _images(count=2, seed=0):
    return torch.randn(count, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('exact', [True, False])
@pytest.mark.parametrize('ablation', ['zero', 'mean'])
def test_replay_resizes_to_ori_shape_and_passes_the_ablation_on(model, exact, ablation):
    """Labels at an ori_shape other than the input's (post-processing resizes) and the mean
    ablation's values reach the replayed layer."""
    inputs, samples = _images(2), _samples(2, ori_shape=(40, 90))
    ref = resolve_layer(model, 'backbone.layer3')
    replay, plain = PrefixReplaySplit(model, ref, exact=exact), FeatureSplit(model, ref)
    means = 3 * torch.rand(64, generator=torch.Generator().manual_seed(1)) \
        if ablation == 'mean' else None
    replay.prefix(inputs)
    channels = list(range(0, 64, 2))
    expected = plain.predict_full(inputs, samples, channels, ablation, means)
    got = replay.predict_full(inputs, samples, channels, ablation, means)
    assert [label.shape for label in got] == [(40, 90)] * 2
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    if ablation == 'mean':      # the means matter: zeroing gives other labels
        zeroed = plain.predict_full(inputs, samples, channels)
        assert any(not torch.equal(a, b) for a, b in zip(zeroed, expected))


def test_exact_replay_gives_bit_identical_logits(model):
    inputs, samples = _images(2), _samples(2)
    ref = resolve_layer(model, 'backbone.layer3')
    replay, plain = PrefixReplaySplit(model, ref, exact=True), FeatureSplit(model, ref)
    metas = [s.metainfo for s in samples]
    inference = model.inference
    recorded = []
    model.inference = lambda *args: recorded.append(inference(*args)) or recorded[-1]
    try:
        with torch.no_grad():
            replay.prefix(inputs)
            replay.predict_full(inputs, samples, [1, 5, 9])
            plain.predict_full(inputs, samples, [1, 5, 9])
    finally:
        del model.inference
    assert len(recorded) == 2 and torch.equal(recorded[0], recorded[1])
    assert metas  # (the same metainfo both ways)


def test_before_any_prefix_the_plain_slow_path_answers(model):
    inputs, samples = _images(2), _samples(2)
    ref = resolve_layer(model, 'backbone.layer2')
    got = PrefixReplaySplit(model, ref).predict_full(inputs, samples, [0, 1])
    expected = FeatureSplit(model, ref).predict_full(inputs, samples, [0, 1])
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


@contextmanager
def _layer1_raises(model):
    """The backbone's layer1 raises 'boom in layer1' inside the block, and is itself after."""
    def broken(_x):
        raise RuntimeError('boom in layer1')

    model.backbone.layer1.forward = broken
    try:
        yield
    finally:
        del model.backbone.layer1.forward


def test_an_error_inside_the_recorded_forward_surfaces(model):
    replay = PrefixReplaySplit(model, resolve_layer(model, 'backbone.layer3'))
    with _layer1_raises(model), pytest.raises(RuntimeError, match='boom in layer1'):
        replay.prefix(_images(1))


# ------------------------------------------------------------------ which calls replay
def _call(module, start, end):
    call = _Call(module, start)
    call.end = end
    return call


def test_outermost_calls_before_the_target_by_hand():
    a, b, c, d, target, e = (torch.nn.Identity() for _ in range(6))
    # a [0, 3] holds b [1, 2]; c [4, 5]; target [6, 9] holds d [7, 8]; e [10, 11] after it
    calls = [_call(a, 0, 3), _call(b, 1, 2), _call(c, 4, 5), _call(target, 6, 9),
             _call(d, 7, 8), _call(e, 10, 11)]
    assert [call.module for call in outermost_calls_before(calls, target)] == [a, c]
    # a call still open when the target starts (an ancestor) is not replayed
    parent = torch.nn.Identity()
    nested = [_call(parent, 0, None), _call(a, 1, 2), _call(target, 3, 4)]
    assert [call.module for call in outermost_calls_before(nested, target)] == [a]
    # no call of the target, or one that never ended: nothing to replay
    assert outermost_calls_before(calls[:3], target) == []
    assert outermost_calls_before([_call(a, 0, 1), _call(target, 2, None)], target) == []


def test_a_copy_of_a_record_shares_no_storage_and_keeps_its_types():
    Pair = namedtuple('Pair', 'left right')
    tensors = [torch.arange(3.0) + i for i in range(5)]
    record = dict(stack=[tensors[0], (tensors[1], Pair(tensors[2], tensors[3]))],
                  extra=tensors[4], tag='kept')
    copy = _copy(record)
    assert set(copy) == {'stack', 'extra', 'tag'} and copy['tag'] == 'kept'
    stack = copy['stack']
    assert isinstance(stack, list) and isinstance(stack[1], tuple)
    assert isinstance(stack[1][1], Pair) and type(stack[1]) is tuple
    leaves = [stack[0], stack[1][0], stack[1][1].left, stack[1][1].right, copy['extra']]
    for leaf, original in zip(leaves, tensors):
        assert torch.equal(leaf, original)
        assert leaf.data_ptr() != original.data_ptr()


# ------------------------------------------------------------------ the default and fallbacks
def test_inputs_other_than_the_prefix_take_the_plain_slow_path_with_the_ablation(model):
    """predict_full on other inputs (a flipped batch during identification) is the hooked
    full forward, with the ablation's statistics passed on."""
    ref = resolve_layer(model, 'backbone.layer2')
    replay, plain = PrefixReplaySplit(model, ref), FeatureSplit(model, ref)
    assert replay.exact is False            # the shortcut is the default, as on FeatureSplit
    replay.prefix(_images(2, seed=0))
    other, samples = _images(2, seed=1), _samples(2, ori_shape=(40, 90))
    means = 3 * torch.rand(32, generator=torch.Generator().manual_seed(2))
    channels = list(range(0, 32, 2))
    expected = plain.predict_full(other, samples, channels, 'mean', means)
    got = replay.predict_full(other, samples, channels, 'mean', means)
    assert [label.shape for label in got] == [(40, 90)] * 2     # the samples' ori_shape
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert any(not torch.equal(a, b) for a, b in
               zip(plain.predict_full(other, samples, channels), expected))   # means matter


def test_a_layer_whose_output_is_added_to_in_place_replays_a_clean_record(model):
    """The residual sum ``out += identity`` writes into bn2's output: every setting, the
    one that removes nothing included, must leave the recorded output as it was."""
    ref = resolve_layer(model, 'backbone.layer3.1.bn2')
    replay, plain = PrefixReplaySplit(model, ref, exact=True), FeatureSplit(model, ref)
    inputs, samples = _images(2), _samples(2)
    replay.prefix(inputs)
    for channels in ([], [], [0, 3, 5], []):
        expected = plain.predict_full(inputs, samples, channels)
        got = replay.predict_full(inputs, samples, channels)
        assert all(torch.equal(a, b) for a, b in zip(expected, got)), channels


def test_on_the_fast_path_it_is_the_feature_split(model):
    ref = resolve_layer(model, 'backbone:3')
    replay, plain = PrefixReplaySplit(model, ref), FeatureSplit(model, ref)
    assert replay.fast
    inputs, samples = _images(2), _samples(2)
    feats, expected_feats = replay.prefix(inputs), plain.prefix(inputs)
    assert all(torch.equal(a, b) for a, b in zip(feats, expected_feats))
    got = replay.predict_full(inputs, samples, [1, 2])
    expected = plain.predict_full(inputs, samples, [1, 2])
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_after_a_failed_prefix_the_plain_slow_path_answers(model):
    """A batch whose recorded forward failed leaves no record: its settings run in full
    (the previous batch's record is dropped, not replayed)."""
    ref = resolve_layer(model, 'backbone.layer2')
    replay, plain = PrefixReplaySplit(model, ref), FeatureSplit(model, ref)
    replay.prefix(_images(2, seed=0))
    inputs, samples = _images(2, seed=3), _samples(2)
    with _layer1_raises(model), pytest.raises(RuntimeError, match='boom in layer1'):
        replay.prefix(inputs)
    got = replay.predict_full(inputs, samples, [0, 1])
    expected = plain.predict_full(inputs, samples, [0, 1])
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_the_convolutions_reading_the_edited_layer_run_in_full_once_per_batch(model):
    """With the linear shortcut (the default), the first convolution after the layer computes
    its full output once per batch (the clean one, cached); per setting only the removed
    channels' part. exact=True turns it off: one full computation per setting."""
    ref = resolve_layer(model, 'backbone.layer2')
    conv = model.backbone.layer3[0].conv1
    full = []
    conv_forward = conv._conv_forward
    conv._conv_forward = lambda x, *args: full.append(x.shape[1]) or conv_forward(x, *args)
    inputs, samples = _images(2), _samples(2)
    try:
        for exact, expected in ((False, 1), (True, 3)):
            full.clear()
            replay = PrefixReplaySplit(model, ref, exact=exact)
            replay.prefix(inputs)
            for channels in ([0, 1], [2, 3], [4]):
                replay.predict_full(inputs, samples, channels)
            assert len(full) == expected, exact
    finally:
        del conv._conv_forward
