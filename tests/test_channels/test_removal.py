"""ChannelRemoval, replace_channels, channel_means and select_channels.

Expectations are independent of the code under test: hand-built tensors, an unhooked run of
the same model, manual means over the same images, orders written into the test.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from posattack.channels import (ChannelRemoval, channel_means, random_channels, replace_channels,
                                select_channels)
from posattack.channels.ranking import ChannelRanking

# ----------------------------------------------------------------------------- helpers


def _inputs(batch=2, height=64, width=128, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator)


class _Recorder:
    """Forward (pre-)hook that keeps what a module received or returned."""

    def __init__(self):
        self.value = None

    def pre(self, module, args):
        self.value = args[0]

    def post(self, module, args, output):
        self.value = output


def _run_with_probes(model, inputs):
    """Logits, the backbone's output tuple as later hooks see it, and backbone.layer3's output.

    Probes registered after a ChannelRemoval see its edited output (PyTorch runs forward hooks
    in registration order, each on the result of the previous one). The ASPP head's image-pool
    branch is probed too: it must receive the edited last stage.
    """
    backbone_out, layer3_out, pool_in = _Recorder(), _Recorder(), _Recorder()
    handles = [model.backbone.register_forward_hook(backbone_out.post),
               model.backbone.layer3.register_forward_hook(layer3_out.post),
               model.decode_head.image_pool.register_forward_pre_hook(pool_in.pre)]
    try:
        with torch.no_grad():
            logits = model(inputs, mode='tensor')
    finally:
        for handle in handles:
            handle.remove()
    assert pool_in.value is backbone_out.value[
        3], 'the head must consume what the backbone hook saw'
    return logits, backbone_out.value, layer3_out.value


def _ranking(num_channels=8):
    overall = [5, 2, 7, 0, 1, 3, 4, 6]
    return ChannelRanking(layer='backbone:3', num_channels=num_channels, method='hand_made',
                          num_images=0, orders={'overall': overall[:num_channels],
                                                'left': list(reversed(range(num_channels)))})


# ----------------------------------------------------------------------------- replace_channels
def test_replace_channels_zero_and_mean_by_hand():
    tensor = torch.arange(2 * 4 * 2 * 3, dtype=torch.float32).view(2, 4, 2, 3)
    before = tensor.clone()

    zeroed = replace_channels(tensor, [1, 3])
    assert torch.equal(tensor, before), 'input must not be modified in place'
    assert zeroed.data_ptr() != tensor.data_ptr()
    assert torch.equal(zeroed[:, [1, 3]], torch.zeros(2, 2, 2, 3))
    assert torch.equal(zeroed[:, [0, 2]], before[:, [0, 2]])

    means = torch.tensor([10.0, 20.0, 30.0, 40.0])
    meaned = replace_channels(tensor, [3, 1], ablation='mean', mean_values=means)
    assert torch.equal(meaned[:, 1], torch.full((2, 2, 3), 20.0))
    assert torch.equal(meaned[:, 3], torch.full((2, 2, 3), 40.0))
    assert torch.equal(meaned[:, [0, 2]], before[:, [0, 2]])
    assert torch.equal(tensor, before)

    # (B, C) tensors (pooled features) work the same way
    flat = torch.ones(3, 4)
    assert replace_channels(flat, [0]).sum().item() == 9


def test_replace_channels_empty_is_identity():
    tensor = torch.randn(1, 4, 2, 2)
    assert replace_channels(tensor, []) is tensor


@pytest.mark.parametrize('channels, error, words', [
    ([0, 4], IndexError, 'C=4'),
    ([-1], IndexError, '>= 0'),
    ([1.5], TypeError, 'integers'),
    ([True], TypeError, 'integers'),
])
def test_replace_channels_bad_ids(channels, error, words):
    with pytest.raises(error, match=words):
        replace_channels(torch.zeros(1, 4, 2, 2), channels)


def test_replace_channels_bad_ablation_arguments():
    tensor = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ValueError, match="'zero', 'mean'"):
        replace_channels(tensor, [0], ablation='noise')
    with pytest.raises(ValueError, match='channel_means'):
        replace_channels(tensor, [0], ablation='mean')
    with pytest.raises(ValueError, match="ablation='mean'"):
        replace_channels(tensor, [0], ablation='zero', mean_values=torch.zeros(4))
    with pytest.raises(ValueError, match='C=4'):
        replace_channels(tensor, [0], ablation='mean', mean_values=torch.zeros(3))
    with pytest.raises(ValueError, match=r'shape \(C,\)'):
        replace_channels(tensor, [0], ablation='mean', mean_values=torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r'\(B, C, \.\.\.\)'):
        replace_channels(torch.zeros(4), [0])


# ----------------------------------------------------------------------------- ChannelRemoval
def test_no_channels_leaves_logits_identical(tiny_segmentor):
    inputs = _inputs()
    clean, _, _ = _run_with_probes(tiny_segmentor, inputs)
    with ChannelRemoval(tiny_segmentor, 'backbone:3', []) as removal:
        edited, _, _ = _run_with_probes(tiny_segmentor, inputs)
    assert removal.num_calls == 1
    assert torch.equal(clean, edited)


def test_removal_changes_exactly_the_chosen_channels(tiny_segmentor):
    inputs = _inputs()
    clean_logits, clean_head_in, clean_layer3 = _run_with_probes(tiny_segmentor, inputs)
    removed = [0, 5, 77, 127]
    kept = [c for c in range(128) if c not in removed]
    with ChannelRemoval(tiny_segmentor, 'backbone:3', removed):
        logits, head_in, layer3 = _run_with_probes(tiny_segmentor, inputs)

    assert type(head_in) is tuple and len(head_in) == 4  # the backbone's container type survives
    assert torch.equal(head_in[3][:, removed], torch.zeros_like(head_in[3][:, removed]))
    assert torch.equal(head_in[3][:, kept], clean_head_in[3][:, kept])
    for index in range(3):  # the other stages of the tuple are untouched
        assert torch.equal(head_in[index], clean_head_in[index])
    assert torch.equal(layer3, clean_layer3)  # nothing upstream changes
    assert not torch.equal(logits, clean_logits)  # and the removal does reach the output


def test_removal_on_a_module_returning_a_tensor(tiny_segmentor):
    inputs = _inputs()
    _, clean_head_in, _ = _run_with_probes(tiny_segmentor, inputs)
    with ChannelRemoval(tiny_segmentor, 'backbone.layer4', [3]):
        _, head_in, _ = _run_with_probes(tiny_segmentor, inputs)
    assert torch.equal(head_in[3][:, 3], torch.zeros_like(head_in[3][:, 3]))
    assert torch.equal(head_in[3][:, 4:], clean_head_in[3][:, 4:])


def test_hook_is_gone_after_the_block_and_after_an_exception(tiny_segmentor):
    inputs = _inputs(batch=1)
    clean, _, _ = _run_with_probes(tiny_segmentor, inputs)
    backbone = tiny_segmentor.backbone
    assert len(backbone._forward_hooks) == 0

    with ChannelRemoval(tiny_segmentor, None, list(range(64))) as removal:  # None: the head's input
        assert removal.ref.name == 'backbone:3' and removal.active
        assert len(backbone._forward_hooks) == 1
    assert not removal.active and len(backbone._forward_hooks) == 0
    assert torch.equal(_run_with_probes(tiny_segmentor, inputs)[0], clean)

    with pytest.raises(KeyError, match='raised inside'):
        with ChannelRemoval(tiny_segmentor, 'backbone:3', [1, 2]):
            raise KeyError('raised inside')
    assert len(backbone._forward_hooks) == 0
    assert torch.equal(_run_with_probes(tiny_segmentor, inputs)[0], clean)


def test_entering_twice_is_refused(tiny_segmentor):
    removal = ChannelRemoval(tiny_segmentor, 'backbone:3', [1])
    with removal:
        with pytest.raises(RuntimeError, match='already active'):
            removal.attach()
    assert len(tiny_segmentor.backbone._forward_hooks) == 0


def test_out_of_range_channel_fails_at_forward_naming_c(tiny_segmentor):
    with ChannelRemoval(tiny_segmentor, 'backbone:3', [128]):
        with pytest.raises(IndexError, match='C=128'):
            _run_with_probes(tiny_segmentor, _inputs(batch=1))
    assert len(tiny_segmentor.backbone._forward_hooks) == 0


def test_unknown_layer_is_refused(tiny_segmentor):
    with pytest.raises(ValueError, match='backbone'):
        ChannelRemoval(tiny_segmentor, 'backbon:3', [1])


def test_callable_channels_receive_the_channel_count(tiny_segmentor):
    seen = []

    def last_two(num_total):
        seen.append(num_total)
        return [num_total - 2, num_total - 1]

    with ChannelRemoval(tiny_segmentor, 'backbone:2', last_two) as removal:
        _, head_in, _ = _run_with_probes(tiny_segmentor, _inputs(batch=1))
        _run_with_probes(tiny_segmentor, _inputs(batch=1))
    assert seen == [64]  # resolved once, with stage 3's 64 channels
    assert removal.channels == [62, 63]
    assert torch.equal(head_in[2][:, 62:], torch.zeros_like(head_in[2][:, 62:]))


class _ListBackbone(nn.Module):
    def forward(self, x):
        return [x + 1, x * 2]


class _ListModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _ListBackbone()

    def forward(self, x):
        return self.backbone(x)


def test_list_outputs_stay_lists_and_only_the_indexed_element_changes():
    model = _ListModel()
    x = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)
    with ChannelRemoval(model, 'backbone:-1', [1]):
        out = model(x)
    assert type(out) is list
    assert torch.equal(out[0], x + 1)
    expected = x * 2
    expected[:, 1] = 0
    assert torch.equal(out[1], expected)


# ----------------------------------------------------------------------------- mean ablation
def _test_loader(demo_cfg):
    from mmengine.runner import Runner
    return Runner.build_dataloader(demo_cfg.test_dataloader)


def _manual_means(model, dataloader, max_images):
    """Spatial mean per channel of the backbone's last stage, per image, averaged over images."""
    per_image = []
    with torch.no_grad():
        for data in dataloader:
            data = model.data_preprocessor(data, False)
            features = model.backbone(data['inputs'])[3]
            per_image.extend(features.mean(dim=(2, 3)))
    return torch.stack(per_image[:max_images]).double().mean(dim=0)


def test_channel_means_match_a_manual_average(tiny_segmentor, demo_cfg):
    loader = _test_loader(demo_cfg)  # 4 val images, batches of 2
    expected_all = _manual_means(tiny_segmentor, loader, max_images=4)
    means = channel_means(tiny_segmentor, 'backbone:3', loader)
    assert means.shape == (128,)
    torch.testing.assert_close(means.double(), expected_all, rtol=1e-5, atol=1e-6)

    expected_three = _manual_means(tiny_segmentor, loader, max_images=3)  # cuts a batch in two
    torch.testing.assert_close(channel_means(tiny_segmentor, None, loader, num_images=3).double(),
                               expected_three, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected_three, expected_all)
    assert len(tiny_segmentor.backbone._forward_hooks) == 0 and not tiny_segmentor.training

    with pytest.raises(ValueError, match='positive integer'):
        channel_means(tiny_segmentor, 'backbone:3', loader, num_images=0)
    with pytest.raises(ValueError, match='empty'):
        channel_means(tiny_segmentor, 'backbone:3', [])


def test_channel_means_follow_slide_inference(tiny_segmentor, demo_cfg):
    """With test_cfg.mode='slide' the means are over the crops mmseg evaluates, not whole images."""
    loader = _test_loader(demo_cfg)
    from mmengine.config import ConfigDict
    tiny_segmentor.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(64, 64))
    crop_means = []
    with torch.no_grad():
        for data in loader:
            inputs = tiny_segmentor.data_preprocessor(data, False)['inputs']
            for left in (0, 64):  # two non-overlapping 64x64 crops of each 64x128 image
                crop = inputs[:, :, :, left:left + 64]
                crop_means.extend(tiny_segmentor.backbone(crop)[3].mean(dim=(2, 3)))
    expected = torch.stack(crop_means).double().mean(dim=0)
    means = channel_means(tiny_segmentor, 'backbone:3', loader)
    torch.testing.assert_close(means.double(), expected, rtol=1e-5, atol=1e-6)
    whole = _manual_means(tiny_segmentor, loader, max_images=4)
    assert not torch.allclose(expected, whole)  # zero padding at crop borders makes a difference


def test_mean_ablation_writes_the_reference_means(tiny_segmentor, demo_cfg):
    means = channel_means(tiny_segmentor, 'backbone:3', _test_loader(demo_cfg))
    inputs = _inputs()
    _, clean_head_in, _ = _run_with_probes(tiny_segmentor, inputs)
    removed = [4, 9, 100]
    with ChannelRemoval(tiny_segmentor, 'backbone:3', removed, ablation='mean', mean_values=means):
        _, head_in, _ = _run_with_probes(tiny_segmentor, inputs)
    features = head_in[3]
    for channel in removed:
        assert torch.equal(features[:, channel],
                           torch.full_like(features[:, channel], means[channel].item()))
    kept = [c for c in range(128) if c not in removed]
    assert torch.equal(features[:, kept], clean_head_in[3][:, kept])


# ----------------------------------------------------------------------------- select_channels
def test_targeted_takes_the_head_of_the_region_order():
    ranking = _ranking()
    assert select_channels('targeted', 8, ranking=ranking, num_channels=3) == [5, 2, 7]
    assert select_channels('targeted', 8, ranking=ranking, region='left', num_channels=2) == [7, 6]
    # fraction: round(0.25 * 8) = 2; tiny fractions still remove one channel
    assert select_channels('targeted', 8, ranking=ranking, fraction=0.25) == [5, 2]
    assert select_channels('targeted', 8, ranking=ranking, fraction=0.01) == [5]
    assert select_channels('targeted', 8, ranking=ranking, fraction=1.0) == [5, 2, 7, 0, 1, 3, 4, 6]
    assert select_channels('targeted', 8, ranking=ranking, num_channels=0) == []


def test_random_selection_is_reproducible_and_pinned():
    first = select_channels('random', 2048, num_channels=10, seed=0)
    assert first == select_channels('random', 2048, num_channels=10, seed=0)
    assert first != select_channels('random', 2048, num_channels=10, seed=1)
    assert len(set(first)) == 10 and all(0 <= c < 2048 for c in first)
    # Golden values: a change of RNG stream or algorithm on any machine shows up here.
    assert first == [855, 921, 269, 1185, 11, 1271, 1526, 1308, 850, 1808]
    assert select_channels('random', 2048, num_channels=5, seed=1) == [1329, 458, 1337, 323, 622]
    # nested draws: N channels of a seed are the first N of its N+k
    assert random_channels(2048, 100, seed=0)[:10] == first
    # fraction counts the same way for random as for targeted
    assert len(select_channels('random', 128, fraction=0.1, seed=0)) == 13


def test_explicit_selection():
    assert select_channels('explicit', 8, channels=[7, 0, 3]) == [7, 0, 3]
    assert select_channels('explicit', 8, channels=torch.tensor([1, 2])) == [1, 2]
    assert select_channels('explicit', 8, channels=[]) == []


@pytest.mark.parametrize('kwargs, error, words', [
    (dict(mode='targeted', num_channels=9), ValueError, r'C=8.*0\.\.8'),
    (dict(mode='random', num_channels=9), ValueError, 'C=8'),
    (dict(mode='random', fraction=0.0), ValueError, r'\(0, 1\]'),
    (dict(mode='random', fraction=1.5), ValueError, r'\(0, 1\]'),
    (dict(mode='random', num_channels=2, fraction=0.5), ValueError, 'both'),
    (dict(mode='random'), ValueError, 'neither'),
    (dict(mode='random', num_channels=-1), ValueError, '>= 0'),
    (dict(mode='random', num_channels=2, seed=-3), ValueError, 'seed'),
    (dict(mode='targeted', num_channels=2, ranking=None), ValueError, 'needs a ranking'),
    (dict(mode='targeted', num_channels=2, region='top'), ValueError, 'overall, left'),
    (dict(mode='sideways', num_channels=2), ValueError, "'targeted', 'random', 'explicit'"),
    (dict(mode='explicit'), ValueError, 'channels='),
    (dict(mode='explicit', channels=[1], num_channels=1), ValueError, 'num_channels=None'),
    (dict(mode='explicit', channels=[1, 1]), ValueError, 'more than once'),
    (dict(mode='explicit', channels=[8]), IndexError, 'C=8'),
    (dict(mode='random', num_channels=1, channels=[1]), ValueError, "mode='explicit'"),
])
def test_selection_errors(kwargs, error, words):
    kwargs = dict(kwargs)
    mode = kwargs.pop('mode')
    if mode == 'targeted':
        kwargs.setdefault('ranking', _ranking())
    with pytest.raises(error, match=words):
        select_channels(mode, 8, **kwargs)


def test_ranking_for_another_tensor_is_refused():
    with pytest.raises(ValueError, match='8 channels.*this tensor has 2048'):
        select_channels('targeted', 2048, ranking=_ranking(), num_channels=5)
