"""The pieces under a depth profile: which layers the prediction reads, and the prefix replay
that computes what precedes a layer inside the backbone once per batch."""
from __future__ import annotations

import pytest
import torch
from helpers import diversify, one_torch_thread  # noqa: F401 - fixture
from mmseg.structures import SegDataSample
from torch import nn

from posattack.attack.feature_split import FeatureSplit
from posattack.attack.prefix_replay import PrefixReplaySplit
from posattack.channels.layers import resolve_layer
from posattack.profile.depth_layers import check_layers_read, depth_layers, prediction_reads

HEIGHT, WIDTH = 64, 128


@pytest.fixture
def model(tiny_segmentor):
    return diversify(tiny_segmentor)


def _samples(count):
    samples = []
    for _ in range(count):
        sample = SegDataSample()
        sample.set_metainfo(dict(img_shape=(HEIGHT, WIDTH), ori_shape=(HEIGHT, WIDTH),
                                 pad_shape=(HEIGHT, WIDTH)))
        samples.append(sample)
    return samples


def _images(count=2, seed=0):
    return torch.randn(count, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


def test_deeplab_head_reads_only_the_last_stage_tuple_element(model):
    inputs = _images(1)
    # ASPPHead in_index=3: element 0 of the backbone tuple is never read ...
    assert not prediction_reads(model, 'backbone:0', inputs)
    # ... but the same tensor named by the module that makes it feeds layer2
    assert prediction_reads(model, 'backbone.layer1', inputs)
    assert prediction_reads(model, 'backbone:3', inputs)
    # an auxiliary head does not run at inference
    assert not prediction_reads(model, 'auxiliary_head', inputs) \
        if hasattr(model, 'auxiliary_head') else True


def test_depth_layers_of_the_demo_model(model):
    assert depth_layers(model, _images(1)) == [
        'backbone.layer1', 'backbone.layer2', 'backbone.layer3', 'backbone:3']


def test_unread_layer_is_refused_naming_the_read_ones(model):
    inputs = _images(1)
    with pytest.raises(ValueError, match=r"'backbone:1' is not read by the prediction.*"
                                         r'backbone\.layer1 backbone\.layer2'):
        check_layers_read(model, ['backbone:1'], inputs, depth_layers(model, inputs))
    with pytest.raises(ValueError, match='Unknown layer'):
        check_layers_read(model, ['backbone.layer9'], inputs, ['backbone:3'])


@pytest.mark.parametrize('layer', ['backbone.layer2', 'backbone.layer1.0.conv2',
                                   'backbone.layer3'])
@pytest.mark.parametrize('exact', [True, False])
def test_replay_gives_the_labels_of_a_full_forward(model, layer, exact):
    inputs, samples = _images(2), _samples(2)
    ref = resolve_layer(model, layer)
    replay, plain = PrefixReplaySplit(model, ref, exact=exact), FeatureSplit(model, ref)
    assert not replay.fast
    replay.prefix(inputs)
    for channels in ([], [0, 3, 5], list(range(8))):
        expected = plain.predict_full(inputs, samples, channels)
        got = replay.predict_full(inputs, samples, channels)
        assert all(torch.equal(a, b) for a, b in zip(expected, got))
    # and removing channels changes something, so the equality above is not vacuous
    removed = plain.predict_full(inputs, samples, list(range(8)))
    clean = plain.predict_full(inputs, samples, [])
    assert any(not torch.equal(a, b) for a, b in zip(removed, clean))


def test_replayed_modules_do_not_compute(model):
    ref = resolve_layer(model, 'backbone.layer3')
    replay = PrefixReplaySplit(model, ref)
    inputs, samples = _images(2), _samples(2)
    replay.prefix(inputs)
    computed = []
    conv = model.backbone.layer2[0].conv1
    original = conv.forward
    conv.forward = lambda x: computed.append(1) or original(x)
    try:
        replay.predict_full(inputs, samples, [1, 2])
        assert computed == []  # layer2 replayed: its first convolution never ran
        replay.predict_full(_images(2, seed=1), samples, [1, 2])
        assert computed  # other inputs than the recorded ones: the plain slow path
    finally:
        del conv.forward


def test_replay_refuses_a_forward_that_changes_its_calls(model):
    class Flaky(nn.Module):
        """Runs ``extra`` before ``inner`` on its first forward only: not replayable."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.extra = nn.Identity()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 1:
                x = self.extra(x)
            return self.inner(x)

    model.backbone.layer2 = Flaky(model.backbone.layer2)
    replay = PrefixReplaySplit(model, resolve_layer(model, 'backbone.layer2.inner'))
    inputs = _images(2)
    replay.prefix(inputs)  # records extra's call, which the next forward will not make
    with pytest.raises(RuntimeError, match='not made again'):
        replay.predict_full(inputs, _samples(2), [0])
