"""Build an MMSegmentation segmentor from a config and (safely) load its checkpoint.

Behaves like ``mmseg.apis.init_model`` (same config handling, ``model.cfg``,
``model.dataset_meta``, eval mode) but reads checkpoints through
:func:`posattack.utils.checkpoint.load_checkpoint` and checks them against the model first, so a
wrong checkpoint fails with a message that says what is wrong instead of loading half a
model or raising deep inside torch.
"""
from __future__ import annotations

import copy
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Optional, Union

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from ..utils.checkpoint import CheckpointError, load_checkpoint
from ..utils.config_scope import CONFIG_SCOPE, packaged_config

__all__ = ['CheckpointMismatchError', 'ConfigError', 'config_file_path', 'load_config',
           'load_segmentor']

ConfigLike = Union[str, os.PathLike, Config]
_MAX_KEYS_SHOWN = 5


class ConfigError(RuntimeError):
    """A config file does not parse, or lacks what posattack needs from it."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's weights do not fit the model the config builds."""


def config_file_path(path: str) -> str:
    """Resolve 'mmseg::deeplabv3/x.py' to the file shipped in the package, like _base_ does."""
    match = re.match(r'^(\w+)::(.+)$', path)
    if match is None:
        return os.path.expanduser(path)
    package, relative = match.groups()
    if package == CONFIG_SCOPE:  # ours: found alike in a clone, an editable install, a wheel
        return packaged_config(relative)
    from mmengine.utils import get_installed_path
    try:
        package_path = get_installed_path(package)
    except Exception as error:
        raise ConfigError(
            f"Config '{path}' names package '{package}', which is not installed.") from error
    return os.path.join(package_path, '.mim', 'configs', relative)


def load_config(path: ConfigLike, cfg_options: Optional[dict] = None) -> Config:
    """Read an MMEngine config file (or copy a Config) and merge ``cfg_options`` into it.

    Example:
        >>> cfg = load_config('configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py',
        ...                   cfg_options={'model.decode_head.num_classes': 19})
        >>> cfg.model.type
        'EncoderDecoder'
    """
    if isinstance(path, Config):
        cfg = copy.deepcopy(path)  # never change the caller's Config behind their back
    elif isinstance(path, (str, os.PathLike)):
        file_path = config_file_path(os.fspath(path))
        if not os.path.isfile(file_path):
            raise FileNotFoundError(
                f"Config file not found: '{path}'"
                + (f" (looked for '{file_path}')" if file_path != os.fspath(path) else '')
                + '. Pass the path of an MMSegmentation config, e.g. '
                'configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py.')
        try:
            cfg = Config.fromfile(file_path)
        except Exception as error:
            raise ConfigError(
                f"Config file '{path}' could not be parsed: {type(error).__name__}: "
                f'{error}') from error
    else:
        raise TypeError(
            f'config must be a file path or an mmengine Config, got {type(path).__name__}.')
    if cfg_options:
        if not isinstance(cfg_options, Mapping):
            raise TypeError(
                'cfg_options must be a dict such as {"model.decode_head.num_classes": 19}, '
                f'got {type(cfg_options).__name__}.')
        try:
            cfg.merge_from_dict(dict(cfg_options))
        except Exception as error:
            raise ConfigError(
                f'cfg_options {dict(cfg_options)} could not be merged into the config: '
                f'{type(error).__name__}: {error}') from error
    return cfg


def _prepare_model_config(cfg: Config) -> None:
    """What mmseg's init_model does before building: no pretrained weights, no train_cfg."""
    if 'model' not in cfg:
        raise ConfigError(
            "The config has no 'model' section; it is not an MMSegmentation model config.")
    model_cfg = cfg.model
    if model_cfg.get('type') == 'EncoderDecoder':
        if 'init_cfg' in model_cfg.get('backbone', {}):
            model_cfg.backbone.init_cfg = None
    elif model_cfg.get('type') == 'MultimodalEncoderDecoder':
        for value in model_cfg.values():
            if isinstance(value, dict) and 'init_cfg' in value:
                value.init_cfg = None
    model_cfg.pretrained = None
    model_cfg.train_cfg = None


def extract_state_dict(checkpoint: Mapping, path: str = '<checkpoint>') -> OrderedDict:
    """The model weights of a checkpoint: its 'state_dict' or 'model' entry or the dict itself.

    DDP's 'module.' prefix is stripped (keys and the BatchNorm version metadata alike).

    Example:
        >>> state = extract_state_dict({'state_dict': {'module.conv.weight': w}})
        >>> list(state)
        ['conv.weight']
    """
    if isinstance(checkpoint.get('state_dict'), Mapping):
        state_dict = checkpoint['state_dict']
    elif isinstance(checkpoint.get('model'), Mapping):
        state_dict = checkpoint['model']
    else:
        state_dict = checkpoint
    if not any(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(
            f"Checkpoint '{path}' holds no weights: expected a state dict of tensors, or a "
            f"dict with 'state_dict' or 'model'; its top-level keys are "
            f'{list(checkpoint)[:10]}.')
    metadata = getattr(state_dict, '_metadata', None)
    stripped = OrderedDict(
        (re.sub(r'^module\.', '', key), value) for key, value in state_dict.items())
    if metadata is not None:
        stripped._metadata = OrderedDict(  # type: ignore[attr-defined]
            (re.sub(r'^module(\.|$)', '', key), value) for key, value in metadata.items())
    return stripped


def _list_keys(keys: list[str]) -> str:
    shown = ', '.join(keys[:_MAX_KEYS_SHOWN])
    if len(keys) > _MAX_KEYS_SHOWN:
        shown += f', ... ({len(keys)} in all)'
    return shown


def _shape_mismatch_message(path: str, mismatched: list[tuple[str, tuple, tuple]]) -> str:
    lines = [f"Checkpoint '{path}' does not fit the model the config builds:"]
    for key, ckpt_shape, model_shape in mismatched[:_MAX_KEYS_SHOWN]:
        lines.append(f'  {key}: checkpoint {list(ckpt_shape)}, model {list(model_shape)}')
    if len(mismatched) > _MAX_KEYS_SHOWN:
        lines.append(f'  ... ({len(mismatched)} parameters differ in all)')
    # Only a classifier whose *output* count differs means another class count; one whose
    # input width differs (same classes) points at the head's width, as any other layer.
    class_layers = [m for m in mismatched if m[0].endswith(('conv_seg.weight', 'conv_seg.bias'))
                    and m[1][0] != m[2][0]]
    if class_layers:
        key, ckpt_shape, model_shape = class_layers[0]
        head = key.rsplit('.conv_seg.', 1)[0]
        lines.append(
            f'Likely cause: the checkpoint was trained with {ckpt_shape[0]} classes, the config '
            f'builds {model_shape[0]} ({key}). Use the config the checkpoint was trained with, '
            f'or set the class count, e.g. --cfg-options model.{head}.num_classes={ckpt_shape[0]}.')
    else:
        # Same class count: name the first layer that differs, which is what to set.
        key, ckpt_shape, model_shape = mismatched[0]
        lines.append(f'Likely cause: the checkpoint belongs to a different architecture or '
                     f'width (first difference: {key}, {list(ckpt_shape)} in the checkpoint, '
                     f'{list(model_shape)} in the model); use the config it was trained with.')
    return '\n'.join(lines)


def load_state_dict_checked(model: torch.nn.Module,
                            state_dict: Mapping,
                            path: str = '<checkpoint>',
                            strict: bool = True) -> None:
    """Load weights after checking every key and shape, with errors that name them.

    Shape mismatches always fail (the model would run with random layers). Missing or
    unexpected keys fail when ``strict`` and are logged as warnings otherwise. BatchNorm's
    ``num_batches_tracked`` counters may be absent from old checkpoints, as MMEngine allows.
    """
    expected = model.state_dict()
    mismatched = [(key, tuple(value.shape), tuple(expected[key].shape))
                  for key, value in state_dict.items()
                  if key in expected and isinstance(value, torch.Tensor)
                  and value.shape != expected[key].shape]
    if mismatched:
        raise CheckpointMismatchError(_shape_mismatch_message(path, mismatched))
    missing = [key for key in expected
               if key not in state_dict and not key.endswith('num_batches_tracked')]
    unexpected = [key for key in state_dict if key not in expected]
    # The auxiliary head only trains; a config that drops it for testing (as attacks do
    # to save time) still loads a checkpoint trained with one, as mmseg's init_model does.
    ignored = [key for key in unexpected if key.startswith('auxiliary_head.')
               and getattr(model, 'auxiliary_head', None) is None]
    if ignored:
        print_log(f"Checkpoint '{path}': ignoring {len(ignored)} auxiliary_head weights "
                  '(the config builds no auxiliary head).', logger='current')
        unexpected = [key for key in unexpected if key not in ignored]
        state_dict = {k: v for k, v in state_dict.items() if k not in ignored}
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f'missing from the checkpoint: {_list_keys(missing)}')
        if unexpected:
            problems.append(f'in the checkpoint but not in the model: {_list_keys(unexpected)}')
        message = f"Checkpoint '{path}' and the model differ in parameter names; " + '; '.join(
            problems) + '.'
        if strict:
            raise CheckpointMismatchError(
                message + ' Use the config the checkpoint was trained with, or pass '
                'strict=False to load the matching part anyway.')
        print_log(message + ' Loading the matching part (strict=False).', logger='current',
                  level=logging.WARNING)
    model.load_state_dict(state_dict, strict=False)


def _metainfo_from_config(cfg: Config) -> Optional[dict]:
    """The metainfo the config's test (else val, train) dataset would have, without reading data."""
    from mmseg.registry import DATASETS
    for loader_key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset_cfg = cfg.get(loader_key, {}).get('dataset') if cfg.get(loader_key) else None
        while isinstance(dataset_cfg, Mapping) and 'dataset' in dataset_cfg:
            dataset_cfg = dataset_cfg['dataset']  # RepeatDataset-style wrappers
        if not isinstance(dataset_cfg, Mapping) or 'type' not in dataset_cfg:
            continue
        dataset_cfg = copy.deepcopy(dict(dataset_cfg))
        dataset_cfg['lazy_init'] = True  # metainfo and palette only: no file is read
        try:
            return dict(DATASETS.build(dataset_cfg).metainfo)
        except Exception:  # an unbuildable dataset still has class-level METAINFO
            dataset_type = dataset_cfg['type']
            dataset_class = DATASETS.get(dataset_type) if isinstance(
                dataset_type, str) else dataset_type
            metainfo = dict(getattr(dataset_class, 'METAINFO', None) or {})
            metainfo.update(dataset_cfg.get('metainfo') or {})
            if metainfo.get('classes'):
                return metainfo
    return None


def _num_classes(model: torch.nn.Module) -> Optional[int]:
    decode_head = getattr(model, 'decode_head', None)
    if isinstance(decode_head, torch.nn.ModuleList):  # cascade heads: the last one predicts
        decode_head = decode_head[-1]
    return getattr(decode_head, 'num_classes', None)


def _dataset_meta(checkpoint_meta: Mapping, cfg: Config, num_classes: Optional[int],
                  has_checkpoint: bool) -> Optional[dict]:
    """Class names and palette: checkpoint meta, else the config's dataset, else by count."""
    if isinstance(checkpoint_meta.get('dataset_meta'), Mapping):  # mmseg 1.x
        return dict(checkpoint_meta['dataset_meta'])
    if 'CLASSES' in checkpoint_meta:  # mmseg 0.x
        return {'classes': checkpoint_meta['CLASSES'], 'palette': checkpoint_meta.get('PALETTE')}
    metainfo = _metainfo_from_config(cfg)
    if metainfo and (num_classes is None or len(metainfo.get('classes', ())) == num_classes):
        return metainfo
    if not has_checkpoint:
        return None  # as mmseg: without a checkpoint no guessing by class count
    from mmseg.utils import dataset_aliases, get_classes, get_palette
    for dataset_name in dataset_aliases:
        if len(get_classes(dataset_name)) == num_classes:
            print_log(
                f'Class names are neither in the checkpoint nor derivable from the config; '
                f"using {dataset_name}'s {num_classes} classes, which match the model.",
                logger='current', level=logging.WARNING)
            return {'classes': get_classes(dataset_name), 'palette': get_palette(dataset_name)}
    print_log(f'No class names found for a model with {num_classes} classes; '
              'model.dataset_meta is left unset.', logger='current', level=logging.WARNING)
    return None


def load_segmentor(config: ConfigLike,
                   checkpoint: Optional[Union[str, os.PathLike]] = None,
                   cfg_options: Optional[dict] = None,
                   trust_checkpoint: bool = False,
                   device: str = 'cpu',
                   strict: bool = True) -> tuple[torch.nn.Module, Config]:
    """Build the segmentor a config describes and load a checkpoint into it, safely.

    Returns ``(model, cfg)``: the model in eval mode on ``device`` with ``model.cfg`` (the
    config as used, as mmseg's init_model leaves it) and ``model.dataset_meta`` set.

    Example:
        >>> model, cfg = load_segmentor('configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py',
        ...                             'work_dirs/demo/iter_600.pth')
        >>> logits = model(torch.zeros(1, 3, 128, 256))
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    cfg = load_config(config, cfg_options)
    _prepare_model_config(cfg)
    register_all_modules(init_default_scope=False)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    if torch.device(device).type == 'cpu':
        # SyncBN (the default in Cityscapes configs) needs a process group; on CPU it is
        # plain BatchNorm in eval mode, with the same state-dict keys.
        model = revert_sync_batchnorm(model)

    checkpoint_meta: Mapping = {}
    if checkpoint is not None:
        checkpoint_path = os.path.expanduser(os.fspath(checkpoint))
        loaded = load_checkpoint(checkpoint_path, map_location='cpu',
                                 trust_checkpoint=trust_checkpoint)
        state_dict = extract_state_dict(loaded, checkpoint_path)
        load_state_dict_checked(model, state_dict, checkpoint_path, strict=strict)
        if isinstance(loaded.get('meta'), Mapping):
            checkpoint_meta = loaded['meta']

    dataset_meta = _dataset_meta(checkpoint_meta, cfg, _num_classes(model),
                                 has_checkpoint=checkpoint is not None)
    if dataset_meta is not None:
        model.dataset_meta = dataset_meta
    model.cfg = cfg
    model.to(device)
    model.eval()
    return model, cfg
