"""posattack.models.builder: config + checkpoint -> segmentor, checked, compatible with mmseg."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import posattack  # noqa: F401  (registers the checkpoint allowlist, as users get it)
from posattack.models.builder import (CheckpointMismatchError, ConfigError, load_config,
                                      load_segmentor)
from posattack.utils.checkpoint import CheckpointSecurityError, load_checkpoint

INPUT_SHAPE = (2, 3, 64, 128)


def _logits(model, inputs):
    with torch.no_grad():
        return model(inputs, mode='tensor')


def _random_inputs(seed=1):
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))


def _train_briefly(cfg):
    """A few Runner iterations, a validation pass, then the Runner's own checkpoint."""
    from mmengine.runner import Runner
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    runner = Runner.from_cfg(cfg)
    runner.train()  # CheckpointHook writes iter_2.pth; validation at iter 2 follows it
    # Saved after validation, the message hub also holds numpy metric scalars.
    runner.save_checkpoint(cfg.work_dir, 'after_val.pth', by_epoch=False)
    return runner


def test_runner_checkpoint_loads_with_identical_logits(demo_cfg):
    """Train with MMEngine's Runner, save through it, load with posattack and with mmseg.

    One test, because the Runner is the slow part; mmseg's init_model is what users of
    mmseg's tools/test.py hit: it calls torch.load with the weights_only default.
    """
    from mmseg.apis import init_model
    runner = _train_briefly(demo_cfg)
    trained = runner.model.eval()
    ckpt_path = f'{demo_cfg.work_dir}/after_val.pth'
    inputs = _random_inputs()
    expected = _logits(trained, inputs)

    checkpoint = load_checkpoint(ckpt_path)  # weights_only, posattack's allowlist
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(
        checkpoint)
    hub = checkpoint['message_hub']
    assert hub['log_scalars']['val/mIoU'].current() == pytest.approx(
        runner.message_hub.get_scalar('val/mIoU').current())
    assert any(isinstance(value, np.generic) for value in hub['runtime_info'].values())

    for path in (ckpt_path, f'{demo_cfg.work_dir}/iter_2.pth'):
        model, cfg = load_segmentor(demo_cfg, path)
        assert not model.training
        assert model.cfg is cfg and model is not trained
        assert model.dataset_meta['classes'] == runner.train_dataloader.dataset.metainfo['classes']
        assert len(model.dataset_meta['classes']) == 19
        if path == ckpt_path:
            assert torch.equal(_logits(model, inputs), expected)

    saved_allowlist = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:  # without posattack's allowlist torch >= 2.6 refuses the Runner's file...
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|getattr|numpy'):
            torch.load(ckpt_path, map_location='cpu', weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved_allowlist)
    # ...with it (registered at `import posattack`) mmseg's own loader reads it
    model = init_model(demo_cfg.copy(), ckpt_path, device='cpu')
    assert torch.equal(_logits(model, inputs), expected)


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def test_plain_state_dict_and_model_zoo_layouts_load(tiny_segmentor, demo_cfg, tmp_path):
    state = tiny_segmentor.state_dict()
    inputs = _random_inputs(2)
    expected = _logits(tiny_segmentor, inputs)
    zoo_meta = {'dataset_meta': {'classes': tuple(f'c{i}' for i in range(19)),
                                 'palette': [[i, i, i] for i in range(19)]}}
    layouts = {
        'bare.pth': state,
        'zoo.pth': {'state_dict': state, 'meta': zoo_meta},
        'ddp.pth': {'state_dict': {f'module.{key}': value for key, value in state.items()}},
        'model_key.pth': {'model': state},
        'mmseg0x.pth': {'state_dict': state,
                        'meta': {'CLASSES': zoo_meta['dataset_meta']['classes'],
                                 'PALETTE': zoo_meta['dataset_meta']['palette']}},
    }
    for name, content in layouts.items():
        model, _ = load_segmentor(demo_cfg, _save(content, tmp_path / name))
        assert torch.equal(_logits(model, inputs), expected), name
        if name in ('zoo.pth', 'mmseg0x.pth'):  # checkpoint meta wins over the config
            assert tuple(model.dataset_meta['classes']) == zoo_meta['dataset_meta']['classes']
        else:  # else the config's CityscapesDataset metainfo
            assert model.dataset_meta['classes'][:3] == ('road', 'sidewalk', 'building')
            assert model.dataset_meta['palette'][0] == [128, 64, 128]


def test_class_count_mismatch_names_file_parameter_and_shapes(tiny_segmentor, demo_cfg,
                                                              tmp_path):
    path = _save({'state_dict': tiny_segmentor.state_dict()}, tmp_path / 'cs19.pth')
    with pytest.raises(CheckpointMismatchError) as error:
        load_segmentor(demo_cfg, path, cfg_options={'model.decode_head.num_classes': 7})
    message = str(error.value)
    assert path in message
    assert 'decode_head.conv_seg.weight' in message
    channels = tiny_segmentor.decode_head.conv_seg.weight.shape[1]
    assert f'checkpoint [19, {channels}, 1, 1], model [7, {channels}, 1, 1]' in message
    assert 'trained with 19 classes, the config builds 7' in message
    assert 'model.decode_head.num_classes=19' in message


def test_head_width_mismatch_does_not_blame_the_class_count(tiny_segmentor, demo_cfg,
                                                            tmp_path):
    """The classifier reads another width but has 19 outputs on both sides: the hint used to
    say 'trained with 19 classes, the config builds 19'."""
    path = _save({'state_dict': tiny_segmentor.state_dict()}, tmp_path / 'wide.pth')
    channels = tiny_segmentor.decode_head.conv_seg.weight.shape[1]
    with pytest.raises(CheckpointMismatchError) as error:
        load_segmentor(demo_cfg, path, cfg_options={'model.decode_head.channels': 2 * channels})
    message = str(error.value)
    assert 'classes' not in message
    assert f'checkpoint [19, {channels}, 1, 1], model [19, {2 * channels}, 1, 1]' in message
    assert 'Likely cause: the checkpoint belongs to a different architecture or width ' \
        '(first difference: decode_head.' in message


def test_missing_and_unexpected_keys_strict_and_lenient(tiny_segmentor, demo_cfg, tmp_path):
    state = dict(tiny_segmentor.state_dict())
    dropped = [key for key in state if key.startswith('decode_head.conv_seg')]
    for key in dropped:
        del state[key]
    state['extra_head.weight'] = torch.zeros(3)
    path = _save(state, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointMismatchError) as error:
        load_segmentor(demo_cfg, path)
    message = str(error.value)
    assert path in message and 'strict=False' in message
    assert 'decode_head.conv_seg.weight' in message and 'extra_head.weight' in message

    model, _ = load_segmentor(demo_cfg, path, strict=False)
    assert torch.equal(model.backbone.stem[0].weight, tiny_segmentor.backbone.stem[0].weight)


def test_unsafe_checkpoint_is_refused_by_builder(tiny_segmentor, demo_cfg, tmp_path):
    path = _save({'state_dict': tiny_segmentor.state_dict(), 'meta': {'obj': ConfigError('x')}},
                 tmp_path / 'with_object.pth')
    with pytest.raises(CheckpointSecurityError, match='posattack.models.builder.ConfigError'):
        load_segmentor(demo_cfg, path)
    model, _ = load_segmentor(demo_cfg, path, trust_checkpoint=True)
    assert torch.equal(model.decode_head.conv_seg.bias, tiny_segmentor.decode_head.conv_seg.bias)


def test_missing_checkpoint_and_config_files(demo_cfg, tmp_path):
    missing_ckpt = tmp_path / 'no_such.pth'
    with pytest.raises(FileNotFoundError, match='Checkpoint file not found') as error:
        load_segmentor(demo_cfg, missing_ckpt)
    assert str(missing_ckpt) in str(error.value)

    missing_cfg = tmp_path / 'no_such_config.py'
    with pytest.raises(FileNotFoundError, match='Config file not found') as error:
        load_segmentor(missing_cfg)
    assert str(missing_cfg) in str(error.value)


def test_broken_config_files(tmp_path):
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(type="EncoderDecoder"\n')  # unbalanced parenthesis
    with pytest.raises(ConfigError, match='could not be parsed') as error:
        load_config(broken)
    assert str(broken) in str(error.value)

    not_a_model = tmp_path / 'no_model.py'
    not_a_model.write_text('x = 1\n')
    with pytest.raises(ConfigError, match="no 'model' section"):
        load_segmentor(not_a_model)


def test_load_config_merges_options_without_touching_the_input(demo_cfg):
    cfg = load_config(demo_cfg, cfg_options={'model.decode_head.num_classes': 5})
    assert cfg.model.decode_head.num_classes == 5
    assert demo_cfg.model.decode_head.num_classes == 19
    with pytest.raises(TypeError, match='cfg_options must be a dict'):
        load_config(demo_cfg, cfg_options=['model.decode_head.num_classes=5'])


def test_without_checkpoint_builds_like_init_model(demo_cfg):
    model, cfg = load_segmentor(demo_cfg)
    assert not model.training and model.cfg is cfg
    assert cfg.model.train_cfg is None and cfg.model.pretrained is None
    assert demo_cfg.model.train_cfg is not None  # the caller's Config is left alone
    assert model.dataset_meta['classes'][-1] == 'bicycle'
