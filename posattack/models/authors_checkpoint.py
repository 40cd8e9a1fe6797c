"""Convert the authors' DeepLabv3-R50 (output stride 16) checkpoint into an MMEngine checkpoint.

Their file (``zero_padding_best_deeplabv3_resnet50_cityscapes_os16.pth``) is a dict whose
``model_state`` holds the state dict of a torchvision-style DeepLabV3: ``backbone.*`` is a
ResNet-50 without ``fc`` (torchvision's ``IntermediateLayerGetter``), ``classifier.*`` is
DeepLabHead, nested once more in their code (``classifier.classifier.<i>``) and not in
torchvision's own (``classifier.<i>``); both spellings are read, and a ``module.`` prefix
(a state dict saved from ``nn.DataParallel``) is dropped.

The mmseg model is configs/paper/deeplabv3_r50-os16_authors_cityscapes.py: mmseg's ResNet
names its layers as torchvision does, and posattack.models.authors_deeplab_head names its modules
after theirs, so the mapping is a handful of prefix rewrites::

    backbone.conv1.* / bn1.* / layer{1-4}.*     ->  backbone.(same)
    classifier[.classifier].0.{convs,project}.*  ->  decode_head.aspp.(same)
    classifier[.classifier].1.*  (3x3 conv)      ->  decode_head.refine.0.*
    classifier[.classifier].2.*  (its BN)        ->  decode_head.refine.1.*
    classifier[.classifier].4.*  (classifier)    ->  decode_head.conv_seg.*

Nothing is guessed: a key no rule maps, a key mapped onto a name the model lacks, a model
weight left unfilled, or a shape that differs refuses the conversion, naming the keys. The
file is read with ``torch.load(weights_only=True)`` through posattack.utils.checkpoint.

Usage::

    summary = convert_authors_checkpoint('zero_padding_best_...os16.pth', 'authors_os16.pth',
                                         'configs/paper/deeplabv3_r50-os16_authors_cityscapes.py')
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Optional

import torch

from ..utils.checkpoint import CheckpointError, load_checkpoint
from ..utils.fileio import atomic_open, file_sha256

__all__ = ['AUTHORS_STATE_KEY', 'AuthorsCheckpointError', 'authors_state_dict',
           'convert_authors_checkpoint', 'convert_authors_state_dict', 'map_authors_key']

AUTHORS_STATE_KEY = 'model_state'
_MAX_SHOWN = 5

# (pattern on the authors' key, replacement giving the mmseg key); the first match wins.
_HEAD = r'^classifier\.(?:classifier\.)?'
_KEY_RULES = (
    (re.compile(r'^backbone\.((?:conv1|bn1)\..+)$'), r'backbone.\1'),
    (re.compile(r'^backbone\.(layer[1-4]\..+)$'), r'backbone.\1'),
    (re.compile(_HEAD + r'0\.((?:convs|project)\..+)$'), r'decode_head.aspp.\1'),
    (re.compile(_HEAD + r'1\.(.+)$'), r'decode_head.refine.0.\1'),
    (re.compile(_HEAD + r'2\.(.+)$'), r'decode_head.refine.1.\1'),
    (re.compile(_HEAD + r'4\.(.+)$'), r'decode_head.conv_seg.\1'),
)


class AuthorsCheckpointError(CheckpointError):
    """The file is not the authors' checkpoint for the model the config builds."""


def map_authors_key(key: str) -> Optional[str]:
    """The mmseg name of one of the authors' state-dict keys, or None when no rule maps it.

    Usage::

        map_authors_key('classifier.classifier.0.convs.1.0.weight')
        # 'decode_head.aspp.convs.1.0.weight'
        map_authors_key('backbone.fc.weight')   # None: their backbone has no fc
    """
    for pattern, replacement in _KEY_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def _shown(keys) -> str:
    keys = list(keys)
    text = ', '.join(keys[:_MAX_SHOWN])
    return text + (f', ... ({len(keys)} in all)' if len(keys) > _MAX_SHOWN else '')


def authors_state_dict(checkpoint: Mapping, path: str = '<checkpoint>') -> OrderedDict:
    """The ``model_state`` entry of the authors' checkpoint, without a ``module.`` prefix."""
    state = checkpoint.get(AUTHORS_STATE_KEY)
    if not isinstance(state, Mapping):
        raise AuthorsCheckpointError(
            f"'{path}' has no '{AUTHORS_STATE_KEY}' dict (top-level keys: "
            f"{_shown(map(str, checkpoint))}): it is not the authors' checkpoint; an MMEngine "
            'checkpoint needs no conversion.')
    return OrderedDict((re.sub(r'^module\.', '', str(key)), value)
                       for key, value in state.items())


def convert_authors_state_dict(authors_state: Mapping, model_state: Mapping,
                               path: str = '<checkpoint>') -> OrderedDict:
    """The authors' weights under the names (and in the order) of ``model_state``.

    Refuses, in one line naming the keys, anything that does not fit exactly: unmapped
    keys, keys mapped onto names the model lacks, two keys mapped onto one name, model
    keys left unfilled, shapes that differ.
    """
    converted: dict = {}
    source_of: dict = {}
    unmapped, unknown, doubled, mismatched = [], [], [], []
    for key, value in authors_state.items():
        target = map_authors_key(key)
        if target is None:
            unmapped.append(key)
        elif target not in model_state:
            unknown.append(f'{key} -> {target}')
        elif target in converted:
            doubled.append(f'{source_of[target]} and {key} -> {target}')
        elif not isinstance(value, torch.Tensor):
            mismatched.append(f'{key}: a {type(value).__name__}, not a tensor')
        elif tuple(value.shape) != tuple(model_state[target].shape):
            mismatched.append(f'{key}: checkpoint {list(value.shape)}, model '
                              f'{list(model_state[target].shape)} ({target})')
        else:
            converted[target] = value
            source_of[target] = key
    unfilled = [key for key in model_state if key not in converted]
    problems = []
    if unmapped:
        problems.append(f'keys no rule maps: {_shown(unmapped)}')
    if unknown:
        problems.append(f'keys mapped to names the model lacks: {_shown(unknown)}')
    if doubled:
        problems.append(f'keys mapped to the same name: {_shown(doubled)}')
    if mismatched:
        problems.append(f'shapes that differ: {_shown(mismatched)}')
    if unfilled:
        problems.append(f'model weights the checkpoint does not fill: {_shown(unfilled)}')
    if problems:
        raise AuthorsCheckpointError(
            f"Refusing to convert '{path}': " + '; '.join(problems) + ". It is not the authors' "
            'DeepLabv3-R50 OS16 checkpoint for the model the config builds (check the file, '
            'and the config: 19 classes, ASPP 256 channels).')
    return OrderedDict((key, converted[key].detach().clone()) for key in model_state)


def convert_authors_checkpoint(in_path: str, out_path: str, config: str,
                               trust_checkpoint: bool = False) -> dict:
    """Read the authors' file safely, map it onto ``config``'s model, write ``out_path``.

    ``out_path`` is an MMEngine checkpoint (``{'meta': ..., 'state_dict': ...}``), written
    atomically, that posattack.models.builder.load_segmentor and mmseg's tools load. Returns a
    summary: number of tensors, source SHA-256, the output path.
    """
    from .builder import load_segmentor

    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    if os.path.abspath(in_path) == os.path.abspath(out_path):
        raise ValueError(f"Output '{out_path}' is the input file; write the converted "
                         'checkpoint to another path.')
    loaded = load_checkpoint(in_path, map_location='cpu', trust_checkpoint=trust_checkpoint)
    authors = authors_state_dict(loaded, in_path)
    model, _ = load_segmentor(config)  # random weights: only names and shapes are used
    state_dict = convert_authors_state_dict(authors, model.state_dict(), in_path)
    source_sha256 = file_sha256(in_path)
    meta = {
        'converted_from': os.path.basename(in_path),
        'source_sha256': source_sha256,
        'converter': 'posattack.authors_checkpoint',
        'config': os.path.basename(os.fspath(config)),
    }
    if getattr(model, 'dataset_meta', None):
        meta['dataset_meta'] = dict(model.dataset_meta)  # class names for mmseg's tools
    with atomic_open(out_path, 'wb', encoding=None) as handle:
        torch.save({'meta': meta, 'state_dict': state_dict}, handle)
    return {'out': out_path, 'num_tensors': len(state_dict), 'source_sha256': source_sha256}
