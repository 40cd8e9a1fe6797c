"""GAPNet / PermuteNet against a linear read-out of pooled channels computed by hand, and
ProbeAccuracy by hand."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_BACKBONE, one_torch_thread  # noqa: F401  (one_torch_thread: a fixture)
from torch import nn

import posattack.probes  # noqa: F401 - registers GAPNet, PermuteNet, GridPatchDataset, ...
from posattack.probes.accuracy import ProbeAccuracy, accuracy_summary
from posattack.probes.models import GAPNet, PermuteNet, shuffle_channels

# Every test here builds mmseg modules by their registered names.
pytestmark = pytest.mark.usefixtures('mmseg_scope')


# ----------------------------------------------------------------------------- models
def test_gapnet_is_a_linear_readout_of_pooled_channels():
    torch.manual_seed(0)
    model = GAPNet(TINY_BACKBONE, num_classes=9).eval()
    x = torch.randn(2, 3, 48, 48)
    features = model.backbone(x)[-1]
    assert model.in_channels == features.shape[1] == 64
    weight = model.class_conv.weight[:, :, 0, 0]
    expected = features.mean(dim=(2, 3)) @ weight.T + model.class_conv.bias
    assert torch.allclose(model(x), expected, atol=1e-5)
    labels = torch.tensor([3, 7])
    losses = model(x, labels, mode='loss')
    assert torch.allclose(losses['loss'], F.cross_entropy(expected, labels), atol=1e-5)
    predictions = model(x, [3, 7], mode='predict')  # pseudo_collate gives a list of ints
    assert [p['gt_label'] for p in predictions] == [3, 7]
    assert [p['pred_label'] for p in predictions] == expected.argmax(1).tolist()


def test_permutenet_shuffles_channels_afresh_for_every_image_and_forward():
    rows = torch.arange(12.).view(2, 6)
    shuffled = shuffle_channels(rows)
    assert sorted(shuffled[0].tolist()) == rows[0].tolist()
    assert sorted(shuffled[1].tolist()) == rows[1].tolist()
    draws = {tuple(shuffle_channels(rows[:1])[0].tolist()) for _ in range(20)}
    assert len(draws) > 10  # 720 permutations: fresh ones

    torch.manual_seed(0)
    model = PermuteNet(TINY_BACKBONE, num_classes=4).eval()
    x = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1)  # the same image twice
    pooled = model.backbone(x)[-1].mean(dim=(2, 3))
    logits = model(x)
    assert not torch.allclose(logits[0], logits[1])  # independent permutations per image
    assert not torch.allclose(model(x), logits)  # and per forward, in eval mode too
    control = PermuteNet(TINY_BACKBONE, num_classes=4, shuffle_channels=False).eval()
    control.load_state_dict(model.state_dict())
    assert torch.allclose(control(x), model.fc(pooled), atol=1e-6)
    # the order is all a shuffle changes: an FC with equal weights per class cannot tell
    with torch.no_grad():
        model.fc.weight.copy_(torch.arange(4.).view(4, 1).expand(4, model.in_channels))
    assert torch.allclose(model(x)[0], model(x)[1], atol=1e-4)


def test_permutenet_per_batch_permutation_gives_every_row_the_same_order():
    # row b holds 100*b + (0..5): after a shuffle, subtracting the offsets shows each row's order
    offsets = 100. * torch.arange(8.).view(8, 1)
    rows = offsets + torch.arange(6.)
    orders = shuffle_channels(rows, per='batch') - offsets
    assert (orders == orders[0]).all()  # one order for the whole batch (the authors' choice)
    assert sorted(orders[0].tolist()) == list(range(6))  # still a permutation
    draws = {tuple((shuffle_channels(rows, per='batch') - offsets)[0].tolist()) for _ in range(20)}
    assert len(draws) > 10  # a fresh one at every call
    per_image = shuffle_channels(rows, per='image') - offsets
    assert len({tuple(order.tolist()) for order in per_image}) > 1  # rows differ (else p = 720^-7)
    assert all(sorted(order.tolist()) == list(range(6)) for order in per_image)
    seeded = [shuffle_channels(rows, torch.Generator().manual_seed(3), per='batch')
              for _ in range(2)]
    assert torch.equal(*seeded)
    with pytest.raises(ValueError, match="Unknown permutation kind 'pixel'"):
        shuffle_channels(rows, per='pixel')

    torch.manual_seed(0)
    batch = PermuteNet(TINY_BACKBONE, num_classes=4, permutation='batch').eval()
    image = PermuteNet(TINY_BACKBONE, num_classes=4).eval()
    image.load_state_dict(batch.state_dict())
    assert (batch.permutation, image.permutation) == ('batch', 'image')
    x = torch.randn(1, 3, 32, 32).repeat(3, 1, 1, 1)  # the same image three times
    logits = batch(x)
    assert torch.allclose(logits[0], logits[1]) and torch.allclose(logits[0], logits[2])
    assert not torch.allclose(image(x)[0], image(x)[1])
    assert not torch.allclose(batch(x), logits)  # fresh per forward, in eval mode too
    # each row is the FC of its pooled channels in some order: with equal weights per class
    # (logit k = k * sum of channels) every order gives the same logits
    with torch.no_grad():
        batch.fc.weight.copy_(torch.arange(4.).view(4, 1).expand(4, batch.in_channels))
        pooled = batch.backbone(x)[-1].mean(dim=(2, 3))
    assert torch.allclose(batch(x), batch.fc(pooled), atol=1e-4)
    with pytest.raises(ValueError, match="Unknown permutation 'pixel'"):
        PermuteNet(TINY_BACKBONE, num_classes=4, permutation='pixel')


class TokenBackbone(nn.Module):
    """A backbone giving tokens (B, N, C): nothing to pool over H and W."""

    def forward(self, x):
        return (x.flatten(2).transpose(1, 2), )


@pytest.mark.parametrize('network', [GAPNet, PermuteNet])
def test_probe_models_bad_input(network):
    with pytest.raises(ValueError, match=r'gives shape \(1, 4096, 3\), which cannot be pooled'):
        network(TokenBackbone(), num_classes=4)
    with pytest.raises(ValueError, match='num_classes must be an integer >= 2'):
        network(TINY_BACKBONE, num_classes=1)
    with pytest.raises(ValueError, match='feature_index=3 is out of range'):
        network(TINY_BACKBONE, num_classes=4, feature_index=3)
    model = network(TINY_BACKBONE, num_classes=4, padding='reflect').eval()
    with pytest.raises(ValueError, match="'reflect' padding needs every padded feature map"):
        model(torch.zeros(2, 3, 16, 16))  # stage 3 sees 1x1 maps: nothing to reflect


def test_probe_accuracy_metric_by_hand():
    metric = ProbeAccuracy()
    metric.process({}, [dict(pred_label=1, gt_label=1), dict(pred_label=0, gt_label=1)])
    metric.process({}, [dict(pred_label=2, gt_label=2), dict(pred_label=2, gt_label=0)])
    results = metric.compute_metrics(metric.results)
    # 2 of 4 right; per class: 0 -> 0/1, 1 -> 1/2, 2 -> 1/1
    assert results == {'accuracy': 50.0, 'mean_class_accuracy': pytest.approx(50.0),
                       'num_samples': 4}
    assert accuracy_summary([0, 1], [1, 1])['mean_class_accuracy'] == 50.0
    with pytest.raises(ValueError, match='needs ground-truth labels'):
        metric.process({}, [dict(pred_label=1, gt_label=None)])
