"""set_padding_mode: every padded convolution switched, as torch's functional padding pads."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import (TINY_BACKBONE, build_mmseg_model,  # noqa: F401  (one_torch_thread: a fixture)
                     one_torch_thread)
from torch import nn

import posattack.probes  # noqa: F401 - registers GAPNet, PermuteNet, GridPatchDataset, ...
from posattack.probes.padding import padding_modes, set_padding_mode

# Every test here builds mmseg modules by their registered names.
pytestmark = pytest.mark.usefixtures('mmseg_scope')


# ----------------------------------------------------------------------------- padding
def _padded_convs(module):
    return [
        m for m in module.modules() if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding)
    ]


@pytest.mark.parametrize('mode, torch_mode', [('reflect', 'reflect'), ('replicate', 'replicate'),
                                              ('zero', 'zeros')])
def test_padding_mode_reaches_every_padded_conv_of_a_resnet(mode, torch_mode):
    backbone = build_mmseg_model(TINY_BACKBONE)
    padded = _padded_convs(backbone)
    unpadded = [m for m in backbone.modules() if isinstance(m, nn.Conv2d) and m not in padded]
    assert len(padded) == 19 and unpadded  # 3 stem + 16 block convs; 1x1 shortcuts unpadded

    assert set_padding_mode(backbone, mode) == len(padded)
    assert {m.padding_mode for m in padded} == {torch_mode}
    assert {m.padding_mode for m in unpadded} == {'zeros'}
    assert padding_modes(backbone) == {mode: len(padded)}


def test_padding_mode_changes_the_convolution_as_functional_padding_does():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 7)
    zero_output = conv(x)
    for mode in ('reflect', 'replicate'):
        set_padding_mode(conv, mode)
        expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), conv.weight, conv.bias)
        assert torch.allclose(conv(x), expected, atol=1e-6)
        assert not torch.allclose(conv(x), zero_output, atol=1e-4)
    set_padding_mode(conv, 'zero')
    assert torch.allclose(conv(x), zero_output)


def test_padding_mode_on_mmcv_convmodule_backbones():
    from mmcv.cnn import ConvModule

    # ConvModule with a native padding: the inner nn.Conv2d gets the mode (mmseg MobileNetV2)
    backbone = build_mmseg_model(dict(type='MobileNetV2', widen_factor=0.25, out_indices=(6, )))
    padded = _padded_convs(backbone)
    x = torch.randn(1, 3, 32, 32)
    backbone.eval()
    before = backbone(x)[0]
    assert set_padding_mode(backbone, 'replicate') == len(padded) > 10
    assert padding_modes(backbone) == {'replicate': len(padded)}
    assert not torch.allclose(backbone(x)[0], before)

    # ConvModule built with an explicit padding layer: the layer is swapped
    torch.manual_seed(0)
    module = ConvModule(3, 4, 3, padding=1, padding_mode='reflect', norm_cfg=None, act_cfg=None)
    x = torch.randn(1, 3, 5, 5)
    assert torch.allclose(module(x), F.conv2d(F.pad(x, (1, 1, 1, 1), mode='reflect'),
                                              module.conv.weight, module.conv.bias), atol=1e-6)
    assert set_padding_mode(module, 'zero') == 1 and padding_modes(module) == {'zero': 1}
    assert torch.allclose(module(x), F.conv2d(x, module.conv.weight, module.conv.bias, padding=1),
                          atol=1e-6)


def test_padding_mode_bad_input():
    from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding

    with pytest.raises(ValueError, match="Unknown padding mode 'circle'.*'zero', 'reflect'"):
        set_padding_mode(nn.Conv2d(1, 1, 3, padding=1), 'circle')
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), Conv2dAdaptivePadding(3, 3, 3))
    with pytest.raises(ValueError,
                       match=r"Cannot switch to 'reflect'.*1 \(Conv2dAdaptivePadding\)"):
        set_padding_mode(net, 'reflect')
    assert set_padding_mode(net, 'zero') == 1  # zero is what it does anyway
