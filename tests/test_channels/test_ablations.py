"""The ablation registry: zero, mean, gaussian_noise, and what each needs.

Expectations come from constructed tensors (a constant channel, so the noise's mean and std
are known), from a direct computation over the captured layer, and from an unhooked run.
"""
from __future__ import annotations

import pytest
import torch
from mmengine.runner import Runner

from posattack.channels import (ABLATIONS, Ablation, ChannelRemoval, ChannelStatistics,
                                ablation_names, capture, channel_means, channel_statistics,
                                get_ablation, register_ablation, replace_channels)


def test_registry_names_and_which_need_a_first_pass():
    assert ablation_names()[:3] == ('zero', 'mean', 'gaussian_noise')
    assert [get_ablation(n).needs_statistics for n in ('zero', 'mean', 'gaussian_noise')] == \
        [False, True, True]
    assert get_ablation('mean').statistics == ('mean',)
    assert get_ablation('gaussian_noise').statistics == ('std',)
    with pytest.raises(ValueError, match="choose one of 'zero', 'mean', 'gaussian_noise'"):
        get_ablation('blur')
    kept = get_ablation('gaussian_noise')
    assert get_ablation(kept) is kept  # an object passes through: one noise stream per run


def test_gaussian_noise_has_the_channels_std_around_the_activation():
    """Channel 1 is the constant 3.0, so after the ablation it is 3.0 + noise: its mean must be
    3.0 and its std the given 0.5 (up to sampling error over 8 * 64 * 64 = 32768 values)."""
    tensor = torch.randn(8, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    tensor[:, 1] = 3.0
    std = torch.tensor([9.0, 0.5, 9.0, 9.0])
    out = replace_channels(tensor, [1], ablation='gaussian_noise',
                           mean_values=ChannelStatistics(std=std))
    assert abs(out[:, 1].mean().item() - 3.0) < 0.02
    assert abs(out[:, 1].std().item() - 0.5) < 0.01
    assert torch.equal(out[:, [0, 2, 3]], tensor[:, [0, 2, 3]])  # the others untouched
    assert torch.equal(tensor[:, 1], torch.full_like(tensor[:, 1], 3.0))  # not in place
    # seeded: the same call gives the same noise; an object kept over calls draws anew
    again = replace_channels(tensor, [1], 'gaussian_noise', ChannelStatistics(std=std))
    assert torch.equal(out, again)
    kept = get_ablation('gaussian_noise')
    first = replace_channels(tensor, [1], kept, ChannelStatistics(std=std))
    second = replace_channels(tensor, [1], kept, ChannelStatistics(std=std))
    assert not torch.equal(first, second)


def test_gaussian_noise_arguments_are_checked():
    tensor = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ValueError, match='std'):
        replace_channels(tensor, [0], ablation='gaussian_noise')
    with pytest.raises(ValueError, match='std'):
        replace_channels(tensor, [0], 'gaussian_noise', ChannelStatistics(mean=torch.zeros(4)))
    with pytest.raises(ValueError, match='C=4'):
        replace_channels(tensor, [0], 'gaussian_noise', ChannelStatistics(std=torch.ones(3)))


def test_no_op_removal_keeps_outputs_bit_identical_under_every_ablation():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 2, 1))
    inputs = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    clean = model(inputs)
    stats = ChannelStatistics(mean=torch.ones(4), std=torch.ones(4))
    for name in ('zero', 'mean', 'gaussian_noise'):
        with ChannelRemoval(model, '0', [], ablation=name,
                            mean_values=None if name == 'zero' else stats):
            assert torch.equal(model(inputs), clean)
        assert torch.equal(model(inputs), clean) and not model[0]._forward_hooks


def test_channel_statistics_match_a_direct_computation(tiny_segmentor, demo_cfg):
    loader = Runner.build_dataloader(demo_cfg.test_dataloader)
    captured = []
    with torch.no_grad():
        for data in loader:
            data = tiny_segmentor.data_preprocessor(data, False)
            with capture(tiny_segmentor, 'backbone:3') as cap:
                tiny_segmentor.extract_feat(data['inputs'])
            captured.append(cap.output.double())
    values = torch.cat(captured).transpose(0, 1).flatten(1)  # (C, every image and position)
    stats = channel_statistics(tiny_segmentor, 'backbone:3', loader)
    torch.testing.assert_close(stats.mean.double(), values.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats.std.double(), values.std(1, unbiased=False), rtol=1e-4,
                               atol=1e-6)
    assert torch.equal(stats.mean, channel_means(tiny_segmentor, 'backbone:3', loader))


def test_a_new_ablation_is_one_registered_class():
    @register_ablation('negate_for_test', force=True)
    class Negate(Ablation):
        def apply(self, replaced, index, statistics):
            replaced[:, index] = -replaced[:, index]

    try:
        tensor = torch.arange(8.).view(1, 2, 2, 2)
        out = replace_channels(tensor, [1], ablation='negate_for_test')
        assert torch.equal(out[:, 1], -tensor[:, 1]) and torch.equal(out[:, 0], tensor[:, 0])
    finally:
        ABLATIONS.module_dict.pop('negate_for_test')


def test_hook_runs_the_statistics_pass_for_gaussian_noise(demo_cfg):
    from posattack.channels import ChannelRemovalHook
    with pytest.raises(ValueError, match='training'):
        ChannelRemovalHook(mode='random', num_channels=1, ablation='gaussian_noise',
                           apply_in=('train',))
    hook = ChannelRemovalHook(mode='random', num_channels=1, ablation='gaussian_noise')
    assert hook._needs_statistics


def test_a_wrong_statistics_length_names_which_statistic():
    tensor = torch.zeros(1, 4, 2, 2)
    with pytest.raises(ValueError, match='std_values has 3 entries but the tensor has C=4'):
        replace_channels(tensor, [0], 'gaussian_noise', ChannelStatistics(std=torch.ones(3)))
    with pytest.raises(ValueError, match='mean_values has 5 entries but the tensor has C=4'):
        replace_channels(tensor, [0], 'mean', ChannelStatistics(mean=torch.ones(5)))


@pytest.mark.parametrize('dtype, statistics_dtype', [(torch.float32, torch.float64),
                                                      (torch.float64, torch.float32)])
def test_gaussian_noise_is_seed_0_normal_draws_in_the_tensors_dtype(dtype, statistics_dtype):
    """The noise of a fresh ablation is torch.randn from a generator seeded 0, drawn in the
    tensor's dtype and scaled by the std in that dtype (statistics of another dtype are cast
    first): the same numbers as a direct computation, bit for bit."""
    tensor = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(1)).to(dtype)
    std = torch.tensor([0.1, 1 / 3, 2.0, 2 / 3, 0.7], dtype=statistics_dtype)
    channels = [1, 3]
    out = replace_channels(tensor, channels, 'gaussian_noise', ChannelStatistics(std=std))
    index = torch.tensor(sorted(channels))
    noise = torch.randn((2, 2, 3, 4), generator=torch.Generator().manual_seed(0), dtype=dtype)
    expected = tensor.clone()
    expected[:, index] = tensor[:, index] + noise * std.to(dtype)[index].view(1, 2, 1, 1)
    assert out.dtype == dtype and torch.equal(out, expected)


def test_mean_ablation_writes_the_means_in_the_tensors_dtype():
    tensor = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    means = torch.tensor([0.5, 1 / 3, -2.0], dtype=torch.float32)
    out = replace_channels(tensor, [1], 'mean', ChannelStatistics(mean=means))
    assert out.dtype == torch.float64
    assert torch.equal(out[:, 1], torch.full((2, 2, 2), float(means[1]), dtype=torch.float64))
    assert torch.equal(out[:, [0, 2]], tensor[:, [0, 2]])


def test_registered_ablations_know_their_name_and_a_taken_name_needs_force():
    assert [get_ablation(n).name for n in ('zero', 'mean', 'gaussian_noise')] == \
        ['zero', 'mean', 'gaussian_noise']
    with pytest.raises(KeyError, match='zero'):
        register_ablation('zero')(type('Another', (Ablation, ), {}))

    try:
        first = register_ablation('twice_for_test')(type('First', (Ablation, ), {}))
        second = register_ablation('twice_for_test', force=True)(type('Second', (Ablation, ), {}))
        assert type(get_ablation('twice_for_test')) is second and first.name == second.name \
            == 'twice_for_test'
    finally:
        ABLATIONS.module_dict.pop('twice_for_test', None)
