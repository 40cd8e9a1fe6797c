"""The fast path's linear shortcut against a plain forward, on heads with biased convolutions.

The expectation is independent of the shortcut: the same head run in full on the edited
tensor (toy heads), and mmseg's own forward with a removal hook on the backbone (a DeepLabv3
whose ASPP convolutions carry biases). mmseg's heads with a norm layer have bias-free
convolutions, so a bias added twice (once in the cached clean output, once in the removed
channels' contribution) never shows on the demo model: these heads have biases.
"""
from __future__ import annotations

import copy

import pytest
import torch
from helpers import diversify, one_torch_thread  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from posattack.attack.feature_split import FeatureSplit
from posattack.attack.linear_shortcut import LinearShortcut
from posattack.channels.layers import resolve_layer
from posattack.channels.removal import ChannelRemoval, replace_channels
from posattack.data.dataloader import build_test_dataloader

NUM_TOTAL = 128  # channels of the demo backbone's last stage


class BranchHead(nn.Module):
    """Branches that each read the input itself (as ASPP's do), then a conv that does not."""

    def __init__(self, convs, norm: bool):
        super().__init__()
        self.branches = nn.ModuleList(convs)
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(c.out_channels) if norm else nn.Identity() for c in convs)
        self.after = nn.ModuleList(nn.Conv2d(c.out_channels, 2, 1, bias=True) for c in convs)

    def forward(self, x):
        return [after(torch.relu(norm(conv(x))))
                for conv, norm, after in zip(self.branches, self.norms, self.after)]


def _randomise(head: nn.Module, generator: torch.Generator) -> nn.Module:
    """Weights, biases and norm statistics far from their init (biases of size 1)."""
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator,
                                                dtype=module.weight.dtype))
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator,
                                                  dtype=module.bias.dtype))
            if isinstance(module, nn.BatchNorm2d):
                shape = module.weight.shape
                module.weight.copy_(0.5 + torch.rand(shape, generator=generator,
                                                     dtype=module.weight.dtype))
                module.bias.copy_(torch.randn(shape, generator=generator,
                                              dtype=module.bias.dtype))
                module.running_mean.copy_(torch.randn(shape, generator=generator,
                                                      dtype=module.running_mean.dtype))
                module.running_var.copy_(0.5 + torch.rand(shape, generator=generator,
                                                          dtype=module.running_var.dtype))
    return head.eval()


def _run(head, shortcut, edited, clean, channels):
    with torch.no_grad():
        if shortcut is None:
            return head(edited)
        with shortcut.applied(edited, clean, channels):
            return head(edited)


CONV = st.fixed_dictionaries(dict(
    kernel=st.sampled_from([1, 3]), dilation=st.integers(1, 3), stride=st.integers(1, 2),
    bias=st.booleans(), out=st.integers(1, 4)))


@settings(max_examples=60, deadline=None)
@given(convs=st.lists(CONV, min_size=1, max_size=3), norm=st.booleans(),
       in_channels=st.integers(1, 6), size=st.tuples(st.integers(5, 9), st.integers(5, 9)),
       removed=st.sets(st.integers(0, 5)), ablation=st.sampled_from(['zero', 'mean']),
       seed=st.integers(0, 2 ** 31 - 1))
def test_shortcut_equals_the_full_forward_of_random_heads(convs, norm, in_channels, size,
                                                          removed, ablation, seed):
    generator = torch.Generator().manual_seed(seed)
    head = _randomise(BranchHead([
        nn.Conv2d(in_channels, c['out'], c['kernel'], stride=c['stride'],
                  padding=c['dilation'] * (c['kernel'] // 2), dilation=c['dilation'],
                  bias=c['bias']) for c in convs], norm), generator).double()
    shortcut = LinearShortcut([head])
    assert len(shortcut.convs) == 2 * len(convs)   # the branches and the convs after them
    clean = torch.randn((2, in_channels) + size, generator=generator, dtype=torch.float64)
    channels = sorted(c for c in removed if c < in_channels)
    means = torch.randn(in_channels, generator=generator, dtype=torch.float64) \
        if ablation == 'mean' else None
    edited = replace_channels(clean, channels, ablation, means)

    expected = _run(head, None, edited, clean, channels)
    got = _run(head, shortcut, edited, clean, channels)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # after the block every conv computes again (no patched forward is left behind)
    assert all('forward' not in conv.__dict__ for conv in shortcut.convs)


def test_shortcut_with_no_channel_removed_is_bit_identical():
    generator = torch.Generator().manual_seed(0)
    head = _randomise(BranchHead([nn.Conv2d(4, 3, 3, padding=2, dilation=2, bias=True),
                                  nn.Conv2d(4, 2, 1, bias=True)], norm=True), generator)
    clean = torch.randn(2, 4, 7, 9, generator=generator)
    expected = _run(head, None, clean, clean, [])
    got = _run(head, LinearShortcut([head]), replace_channels(clean, [], 'zero'), clean, [])
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_shortcut_recomputes_for_every_new_batch():
    """The clean output is cached per batch: a second batch must not see the first's."""
    generator = torch.Generator().manual_seed(1)
    head = _randomise(BranchHead([nn.Conv2d(3, 2, 3, padding=1, bias=True)], norm=False),
                      generator)
    shortcut = LinearShortcut([head])
    for _ in range(2):
        clean = torch.randn(1, 3, 6, 6, generator=generator)
        edited = replace_channels(clean, [1], 'zero')
        for channels in ([1], [1]):   # twice on one batch: the cached path
            got = _run(head, shortcut, edited, clean, channels)
            torch.testing.assert_close(got[0], _run(head, None, edited, clean, channels)[0])
    shortcut.release()
    assert shortcut._clean is None


def test_convolutions_that_are_not_linear_in_their_input_run_in_full():
    """Grouped, reflect-padded and subclassed convolutions keep their own forward; the
    result still equals the plain forward."""

    class Scaled(nn.Conv2d):          # a subclass may do anything in forward
        def forward(self, x):
            return 2 * super().forward(x)

    generator = torch.Generator().manual_seed(2)
    convs = [nn.Conv2d(4, 2, 3, padding=1, groups=2, bias=True),
             nn.Conv2d(4, 2, 3, padding=1, padding_mode='reflect', bias=True),
             Scaled(4, 2, 1, bias=True), nn.Conv2d(4, 2, 1, bias=True)]
    head = _randomise(BranchHead(convs, norm=False), generator)
    shortcut = LinearShortcut([head])
    assert [c for c in convs if c in shortcut.convs] == [convs[3]]
    clean = torch.randn(2, 4, 6, 8, generator=generator)
    edited = replace_channels(clean, [0, 3], 'zero')
    for a, b in zip(_run(head, shortcut, edited, clean, [0, 3]),
                    _run(head, None, edited, clean, [0, 3])):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------ mmseg, end to end
@pytest.fixture(params=['biased', 'with_norm'])
def aspp_model(request, demo_cfg):
    """The demo DeepLabv3 (diversified); 'biased': its decode head without norm layers, so
    every ASPP convolution (those reading the attacked tensor) has a bias."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = copy.deepcopy(demo_cfg.model)
    if request.param == 'biased':
        cfg.decode_head.norm_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model = diversify(model)
    if request.param == 'biased':
        with torch.no_grad():
            for conv in model.decode_head.modules():
                if isinstance(conv, nn.Conv2d):
                    assert conv.bias is not None
                    conv.bias.normal_(0, 0.5)
    return model.eval()


def test_fast_path_equals_a_hooked_full_forward(aspp_model, demo_cfg):
    model = aspp_model
    split = FeatureSplit(model, resolve_layer(model, 'backbone:3'))
    assert split.fast and len(split.shortcut.convs) >= 4
    channels = list(range(0, NUM_TOTAL, 3))
    inference = model.inference
    recorded = []
    with torch.no_grad():
        for batch in build_test_dataloader(demo_cfg, None, None):
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            metas = [s.metainfo for s in samples]
            with ChannelRemoval(model, 'backbone:3', channels):
                expected = inference(inputs, metas)
            clean = inference(inputs, metas)
            model.inference = lambda *args: recorded.append(inference(*args)) or recorded[-1]
            try:
                split.predict_from(split.prefix(inputs), inputs, samples, channels)
            finally:
                del model.inference
            torch.testing.assert_close(recorded[-1], expected, rtol=1e-4, atol=1e-4)
            assert (recorded[-1] - clean).abs().max() > 1e-2   # the removal did something


def test_channel_index_is_sorted_unique_long_ids_even_when_empty():
    index = LinearShortcut.channel_index([5, 1, 5, 3], torch.device('cpu'))
    assert index.dtype == torch.long and index.tolist() == [1, 3, 5]
    empty = LinearShortcut.channel_index([], torch.device('cpu'))
    assert empty.dtype == torch.long and empty.numel() == 0
