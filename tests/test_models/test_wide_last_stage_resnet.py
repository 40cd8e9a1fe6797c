"""ResNetV1cWideLastStage against mmseg's own ResNetV1c: widen 1 is ResNetV1c parameter for
parameter and output for output; widen 2 changes the last stage's width and nothing before
it; the demo's wide config builds and its head reads the widened tensor."""
from __future__ import annotations

import pytest
import torch
from helpers import REPO_ROOT
from mmseg.models.backbones import ResNetV1c

from posattack.models.wide_last_stage_resnet import ResNetV1cWideLastStage

TINY = dict(depth=18, base_channels=8, stem_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), contract_dilation=True)


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_widen_one_is_resnet_v1c_itself():
    plain, wide = ResNetV1c(**TINY), ResNetV1cWideLastStage(last_stage_widen=1, **TINY)
    plain.eval(), wide.eval()  # (mmseg's ResNet.train returns None: no chaining)
    wide.load_state_dict(plain.state_dict())  # strict: same names, same shapes
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        for a, b in zip(plain(x), wide(x)):
            assert torch.equal(a, b)
    assert wide.feat_dim == plain.feat_dim == 64


def test_widen_two_widens_the_last_stage_only():
    plain, wide = ResNetV1c(**TINY), ResNetV1cWideLastStage(last_stage_widen=2, **TINY)
    plain_shapes, wide_shapes = _shapes(plain), _shapes(wide)
    before_last = [k for k in plain_shapes if not k.startswith('layer4.')]
    assert {k: wide_shapes[k] for k in before_last} == {k: plain_shapes[k] for k in before_last}
    # layer4's first conv reads layer3's 32 channels and writes 2 x 64
    assert wide_shapes['layer4.0.conv1.weight'] == (128, 32, 3, 3)
    assert wide_shapes['layer4.1.conv2.weight'] == (128, 128, 3, 3)
    assert wide.feat_dim == 128
    wide.eval()
    with torch.no_grad():
        outs = wide(torch.randn(1, 3, 32, 64))
    assert [o.shape[1] for o in outs] == [8, 16, 32, 128]


@pytest.mark.parametrize('bad', [0, -2, 1.5, '2'])
def test_a_bad_widen_factor_is_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match='must be an integer >= 1; use 1 for plain ResNetV1c'):
        ResNetV1cWideLastStage(last_stage_widen=bad, **TINY)


def test_the_demo_wide_config_builds_and_its_head_reads_256_channels():
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import posattack  # noqa: F401  registers the backbone
    register_all_modules()
    cfg = Config.fromfile(
        f'{REPO_ROOT}/configs/demo/deeplabv3_r18-tiny-wide_synthetic-cityscapes.py')
    model = MODELS.build(cfg.model)
    model.eval()
    assert isinstance(model.backbone, ResNetV1cWideLastStage)
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 256))
        logits = model.decode_head(feats)
    assert feats[3].shape[1] == 256
    assert logits.shape[1] == 19
