"""AntialiasedResNetV1c against mmseg's own ResNetV1c: filter size 1 is ResNetV1c output for
output; the weights are interchangeable; the blur sits where Zhang puts it; a one-pixel shift
moves its pooled features less; bad options are one-line errors; the demo config trains."""
from __future__ import annotations

import os.path as osp

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT
from mmseg.models.backbones import ResNetV1c

from posattack.models.antialiased_resnet import AntialiasedResNetV1c

# three subsamplings after the stem (max-pool, layer2, layer3), dilation in layer4
TINY = dict(depth=18, base_channels=8, stem_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 1, 2), strides=(1, 2, 2, 1), contract_dilation=True)
TINY_BOTTLENECK = dict(TINY, depth=50, base_channels=4)
BLURPOOL_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                           'deeplabv3_r18-tiny_blurpool_synthetic-cityscapes.py')


def _pair(filter_size, seed=0, antialias_stem=False, **arch):
    """A seeded, initialised ResNetV1c and an AntialiasedResNetV1c with its weights, in eval
    mode, with BN statistics made non-trivial so that normalisation matters."""
    torch.manual_seed(seed)
    plain = ResNetV1c(**arch)
    plain.init_weights()
    generator = torch.Generator().manual_seed(seed + 1)
    for module in plain.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
    blurred = AntialiasedResNetV1c(filter_size=filter_size, antialias_stem=antialias_stem,
                                   **arch)
    blurred.load_state_dict(plain.state_dict())  # strict: same names, same shapes
    plain.eval(), blurred.eval()  # (mmseg's ResNet.train returns None: no chaining)
    return plain, blurred


@pytest.mark.parametrize('arch', [TINY, TINY_BOTTLENECK, dict(TINY_BOTTLENECK, style='caffe')],
                         ids=['basic', 'bottleneck', 'bottleneck-caffe'])
@pytest.mark.parametrize('size', [(32, 64), (37, 51)], ids=['even', 'odd'])
def test_filter_size_one_is_resnet_v1c_output_for_output(arch, size):
    plain, blurred = _pair(1, **arch)
    # in float64: a stride-1 conv then every other sample is a stride-2 conv computed by
    # another kernel, equal up to rounding, which float64 keeps far below any real difference
    plain.double(), blurred.double()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(plain(x), blurred(x)):
            assert a.shape == b.shape
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('size', [(32, 64), (37, 51)], ids=['even', 'odd'])
def test_default_filter_keeps_resnet_v1c_shapes(size):
    plain, blurred = _pair(4, **TINY)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert [o.shape for o in blurred(x)] == [o.shape for o in plain(x)]
    assert blurred.feat_dim == plain.feat_dim == 64


def test_weights_are_interchangeable_and_the_blur_is_not_saved():
    plain, blurred = _pair(4, **TINY)
    assert list(blurred.state_dict()) == list(plain.state_dict())
    assert not any('filt' in key for key in blurred.state_dict())
    ResNetV1c(**TINY).load_state_dict(blurred.state_dict())  # and back, strictly


def test_a_training_seed_gives_resnet_v1c_initial_weights():
    """zero_init_residual included, so plain and blurpool runs of one seed start alike."""
    torch.manual_seed(5)
    plain = ResNetV1c(**TINY)
    plain.init_weights()
    torch.manual_seed(5)
    blurred = AntialiasedResNetV1c(**TINY)
    blurred.init_weights()
    theirs = plain.state_dict()
    for key, value in blurred.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    assert torch.count_nonzero(blurred.layer1[0].norm2.weight) == 0  # zero_init_residual


def test_the_blur_sits_where_zhang_puts_it():
    from antialiased_cnns import BlurPool
    blurred = AntialiasedResNetV1c(**TINY)
    # max-pool: max at stride 1 (ResNetV1c's 3x3 window), then blur at stride 2
    max_pool, blur = blurred.maxpool
    assert (max_pool.kernel_size, max_pool.stride, max_pool.padding) == (3, 1, 1)
    assert isinstance(blur, BlurPool) and blur.stride == 2 and blur.filt_size == 4
    assert blur.filt.shape == (8, 1, 4, 4)
    torch.testing.assert_close(blur.filt[0, 0], torch.outer(*[torch.tensor([1., 3, 3, 1]) / 8] * 2))
    for layer, channels in (('layer2', 16), ('layer3', 32)):
        block = getattr(blurred, layer)[0]
        # the strided conv at stride 1, blurred after its norm and ReLU; the shortcut blurred
        # before its 1x1 conv, which runs at stride 1
        assert block.conv1.stride == (1, 1) and block.blur.stride == 2
        assert block.blur.channels == channels
        # (named entries: downsample[0] is the blur now, downsample._modules['0'] the conv)
        assert list(block.downsample._modules) == ['blur', '0', '1']
        assert block.downsample._modules['0'].stride == (1, 1)
        assert block.downsample.blur.channels == channels // 2
    # stride-1 stages and later blocks are untouched; the stem's first conv keeps its stride
    assert blurred.layer1[0].blur is None and blurred.layer2[1].blur is None
    assert blurred.layer4[0].blur is None and blurred.layer4[0].conv1.stride == (1, 1)
    assert blurred.stem[0].stride == (2, 2)
    assert sum(isinstance(m, BlurPool) for m in blurred.modules()) == 5


@pytest.mark.parametrize('style, strided', [('pytorch', 'conv2'), ('caffe', 'conv1')])
def test_in_a_bottleneck_the_blur_follows_the_strided_conv(style, strided):
    block = AntialiasedResNetV1c(**dict(TINY_BOTTLENECK, style=style)).layer2[0]
    assert block.blur_after == strided and block.blur.stride == 2
    assert [getattr(block, name).stride for name in ('conv1', 'conv2', 'conv3')] == [(1, 1)] * 3
    assert block.blur.channels == getattr(block, strided).out_channels == 8
    assert block.downsample.blur.channels == 16  # layer1's output, 4 x 4


def _pooled(backbone, x):
    with torch.no_grad():
        return backbone(x)[-1].mean(dim=(2, 3))


def _shift_change(model, image, width):
    """How much a one-pixel shift moves the pooled last-stage features: two crops of
    `image` one column apart, |z(a) - z(b)| / |z(a)|."""
    a, b = _pooled(model, image[..., :width]), _pooled(model, image[..., 1:width + 1])
    return ((a - b).norm() / a.norm()).item()


def _blob(height, width):
    """A smooth input (a Gaussian, sd about 3 pixels): nothing in it that the stem's
    strided, unblurred conv can alias, so what a shift changes is made inside the network."""
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    columns = torch.arange(width, dtype=torch.float32)[None]
    blob = torch.exp(-((rows - 30) ** 2 + (columns - 34) ** 2) / 20)
    return torch.stack([blob, -blob, 0.5 * blob])[None]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_a_one_pixel_shift_moves_its_pooled_features_less(seed):
    """The same weights with and without the blur, a constructed smooth input shifted by one
    pixel: the ReLUs and the max-pool make fine detail from it that the plain network's
    subsamplings alias and the blurred ones do not (measured over 8 weight seeds: 0.09 to
    0.30 of the plain network's change)."""
    plain, blurred = _pair(4, seed=seed, **TINY)
    image = _blob(64, 65)
    assert _shift_change(blurred, image, 64) < 0.5 * _shift_change(plain, image, 64)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_with_the_stem_blurred_a_one_pixel_shift_of_noise_moves_it_less(seed):
    """White noise is all fine detail: the stem's own stride 2 aliases it, so only
    antialias_stem=True meets it (measured over 8 weight seeds: 0.05 to 0.23 of the plain
    network's change; the default, stem unblurred, from 0.2 to 2)."""
    plain, blurred = _pair(4, seed=seed, antialias_stem=True, **TINY)
    noise = torch.randn(1, 3, 64, 65, generator=torch.Generator().manual_seed(0))
    assert _shift_change(blurred, noise, 64) < 0.5 * _shift_change(plain, noise, 64)


def test_filter_size_one_with_the_stem_blurred_is_still_resnet_v1c():
    plain, blurred = _pair(1, antialias_stem=True, **TINY)
    assert list(blurred.stem._modules) == ['0', '1', '2', 'blur', '3', '4', '5', '6', '7', '8']
    assert blurred.stem._modules['0'].stride == (1, 1) and blurred.stem.blur.stride == 2
    plain.double(), blurred.double()
    x = torch.randn(1, 3, 37, 51, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(blurred(x)[-1], plain(x)[-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('bad', [0, 8, 2.5, '4', True])
def test_an_unsupported_filter_size_is_a_one_line_error_naming_the_sizes(bad):
    with pytest.raises(ValueError) as error:
        AntialiasedResNetV1c(filter_size=bad, **TINY)
    message = str(error.value)
    assert '\n' not in message
    assert message == (f'filter_size={bad!r} is not supported; choose one of 1, 2, 3, 4, 5, 6, '
                       '7 (1: no blur)')


def test_an_unsupported_padding_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^pad_type='circular' is not supported; choose one "
                                         r'of reflect, replicate, zero$'):
        AntialiasedResNetV1c(pad_type='circular', **TINY)


def test_the_demo_config_builds_it_from_the_registry():
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import posattack  # noqa: F401  registers the backbone
    register_all_modules()
    cfg = Config.fromfile(BLURPOOL_CONFIG)
    assert cfg.model.backbone.depth == 18 and cfg.model.backbone.strides == (1, 2, 1, 1)
    model = MODELS.build(cfg.model)
    assert type(model.backbone) is AntialiasedResNetV1c
    assert model.backbone.filter_size == 4
    bad = cfg.model.copy()
    bad.backbone = dict(bad.backbone, filter_size=9)
    with pytest.raises(ValueError, match='filter_size=9 is not supported; choose one of 1, 2'):
        MODELS.build(bad)


@pytest.mark.slow
def test_the_demo_config_trains_on_the_synthetic_set(synthetic_root, tmp_path):
    from conftest import point_dataloaders_at_tiny_data
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(BLURPOOL_CONFIG)
    point_dataloaders_at_tiny_data(cfg, synthetic_root)
    cfg.work_dir = str(tmp_path / 'work_dir')
    cfg.train_cfg.max_iters = 3
    cfg.train_cfg.val_interval = 3
    cfg.default_hooks.checkpoint.interval = 3
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    assert type(model.backbone) is AntialiasedResNetV1c
    values, _ = runner.message_hub.get_scalar('train/decode.loss_ce').data
    assert len(values) == 3 and np.isfinite(values).all()
    assert np.isfinite(runner.message_hub.get_scalar('val/mIoU').current())
    from posattack.utils.checkpoint import load_checkpoint
    state = load_checkpoint(str(tmp_path / 'work_dir' / 'iter_3.pth'))['state_dict']
    assert 'backbone.layer2.0.downsample.0.weight' in state
    assert not any('filt' in key for key in state)
