"""Checks that an attack will measure something, run on one image before the sweep.

Three ways a sweep can finish with exit 0 and numbers that mean nothing:

* the config builds no segmentor (a ``configs/probes`` classifier given to attack.py);
* the attacked tensor is not read by the prediction (``--layer backbone:1`` on a DeepLabv3
  whose head reads only ``backbone:3``): every setting equals clean, std 0;
* the ranking ranks the channels of another tensor (its recorded layer differs), or was
  identified on another checkpoint (its recorded sha256 differs);
* slide inference without the crop size it reads on the first image.

Plus the NaN model (non_finite.py), caught by the same probe forward.

    check_segmentor_config(config, cfg_options)
    check_ranking_layer(model, ranking, layer, source, allow=False)
    check_ranking_checkpoint(ranking, checkpoint_sha256, source, allow=False)
    probe_attack(split, dataloader, num_channels)   # finite logits; the tensor reaches them
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from mmengine.logging import print_log
from torch import nn

from ..channels.layers import LayerRef, num_outputs_hint, resolve_layer, unwrap_model
from ..channels.ranking import FLIP_DIFFERENCE_RULES, ChannelRanking
from ..channels.removal import ChannelRemoval
from ..models.non_finite import NonFiniteWatch
from ..report.bootstrap_groups import image_groups
from ..report.test_design import TestDesign
from .identification_images import IDENTIFY_ON_CHOICES, dataset_image_paths
from .run_bounds import MAX_SEEDS  # a draw is a draw: the primary count's cap is the same

__all__ = ['AttackReadsNothingError', 'check_ranking_checkpoint', 'check_ranking_layer',
           'check_segmentor_config', 'check_slide_inference', 'layers_read_by_head',
           'probe_attack']


class AttackReadsNothingError(RuntimeError):
    """Removing every channel of the attacked tensor leaves the prediction unchanged."""


def check_segmentor_config(config, cfg_options: Optional[dict] = None) -> None:
    """Refuse, before any weight is read, a config whose model is no MMSegmentation
    segmentor (a checkpoint would otherwise fail to fit it, or a tool deep inside)."""
    from mmseg.models.segmentors.base import BaseSegmentor
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from ..models.builder import load_config
    cfg = load_config(config, cfg_options)  # also imports the config's custom_imports
    check_slide_inference(cfg)
    model_type = (cfg.get('model') or {}).get('type')
    register_all_modules(init_default_scope=False)
    model_class = MODELS.get(model_type) if isinstance(model_type, str) else model_type
    if not isinstance(model_class, type) or issubclass(model_class, BaseSegmentor):
        return  # unknown types: load_segmentor names them
    hint = (' Probe configs (configs/probes) run with tools/probe.py.'
            if 'probe' in model_class.__module__ else '')
    raise ValueError(f'{config} builds a {model_class.__name__}, not an MMSegmentation '
                     'segmentor (EncoderDecoder and kin): pass a segmentation model config.'
                     f'{hint}')


def check_slide_inference(cfg) -> None:
    """mmseg's slide inference reads ``test_cfg.crop_size`` and ``stride`` only on the first
    image, with a KeyError deep in the sweep when one is missing: say so now."""
    test_cfg = (cfg.get('model') or {}).get('test_cfg') or {}
    if test_cfg.get('mode') != 'slide':
        return
    missing = [key for key in ('crop_size', 'stride') if not test_cfg.get(key)]
    if missing:
        raise ValueError(f"model.test_cfg has mode='slide' but no {' or '.join(missing)}: "
                         'set them, e.g. --cfg-options model.test_cfg.crop_size="(512,1024)" '
                         'model.test_cfg.stride="(341,341)", or use mode=\'whole\'.')


def _normalized(model: nn.Module, name: Union[str, LayerRef]):
    ref = resolve_layer(model, name)
    index = ref.index
    if index is not None and index < 0:
        count = num_outputs_hint(unwrap_model(model), ref.module_path)
        if count is not None:
            index += count
    return ref.module, index


def _same_tensor(model: nn.Module, first: str, second: Union[str, LayerRef]) -> bool:
    try:
        return _normalized(model, first) == _normalized(model, second)
    except (ValueError, IndexError):
        return False  # the ranking's layer does not even exist in this model


def check_ranking_layer(model: nn.Module, ranking, layer: Union[str, LayerRef],
                        source: Optional[str], allow: bool = False) -> None:
    """Refuse a ranking made for another tensor than ``layer`` (a name, or the run's resolved
    LayerRef) unless ``allow``."""
    if ranking is None or _same_tensor(model, ranking.layer, layer):
        return
    layer = str(layer)
    message = (f'the ranking {source} ranks the channels of layer {ranking.layer!r}, but this '
               f'run attacks {layer!r}')
    if allow:
        print_log(f'{message}; going on as --allow-ranking-layer-mismatch asks.', 'current')
        return
    raise ValueError(f'{message}: channel ids of one tensor say nothing about another. Pass '
                     f'--layer {ranking.layer}, or --allow-ranking-layer-mismatch if you mean '
                     'to apply it to this layer.')


def layers_read_by_head(model: nn.Module) -> list[str]:
    """The ``backbone:i`` / ``neck:i`` tensors the decode head consumes (its in_index)."""
    model = unwrap_model(model)
    head = getattr(model, 'decode_head', None)
    if isinstance(head, nn.ModuleList):
        head = head[0] if len(head) else None
    in_index = getattr(head, 'in_index', None)
    if in_index is None:
        return []
    top = 'neck' if isinstance(getattr(model, 'neck', None), nn.Module) else 'backbone'
    count = num_outputs_hint(model, top)
    indices = in_index if isinstance(in_index, (list, tuple)) else [in_index]
    names = []
    for index in indices:
        index = int(index)
        if index < 0 and count is not None:
            index += count
        names.append(f'{top}:{index}')
    return names


def _first_sample(dataloader):
    """The dataset's first image as a collated one-image batch.

    Not the first batch of this process's shard: with more processes than images it is empty.
    """
    return dataloader.collate_fn([dataloader.dataset[0]])


def _logits(model: nn.Module, dataloader) -> torch.Tensor:
    data = model.data_preprocessor(_first_sample(dataloader), False)
    samples = model.predict(data['inputs'][:1], data['data_samples'][:1])
    return samples[0].seg_logits.data


def probe_attack(split, dataloader, num_channels: int) -> None:
    """One image, two forwards: the logits are finite, and removing every channel of the
    attacked tensor changes them. Fails before the sweep with what is wrong and the fix."""
    model = split.model
    image = dataloader.dataset.get_data_info(0).get('img_path', 'the first test image')
    with torch.no_grad():
        with NonFiniteWatch(model) as watch:
            clean = _logits(model, dataloader)
        watch.raise_if_logits_non_finite(image)
        with ChannelRemoval(model, split.layer_ref.name, list(range(num_channels))):
            removed = _logits(model, dataloader)
    if not torch.equal(clean, removed):
        return
    read = layers_read_by_head(model)
    fix = (
        f'The decode head reads {", ".join(read)} (decode_head.in_index): attack one of '
        f'those, e.g. --layer {read[-1]}.' if read else
        'Attack a tensor on the path to the logits (posattack.channels.layers.list_layer_names).')
    raise AttackReadsNothingError(
        f'removing all {num_channels} channels of layer {split.layer_ref.name!r} leaves the '
        f'logits unchanged on {image}: the prediction does not read that tensor, so every '
        f'setting would score exactly as clean. {fix}')


def check_design(opts) -> TestDesign:
    """AttackOptions' draw and identification options, checked before any compute; a design
    that cannot reach p < 0.05 is said in one line (not an error)."""
    if not 1 <= opts.max_draws <= MAX_SEEDS:
        raise ValueError(f'--max-draws must lie in 1..{MAX_SEEDS}, got {opts.max_draws} '
                         '(99 is the default).')
    if opts.exceedances is not None and opts.exceedances < 1:
        raise ValueError(f'--exceedances must be >= 1, got {opts.exceedances} (10 is the '
                         'default).')
    if opts.identify_on not in IDENTIFY_ON_CHOICES:
        raise ValueError(f'--identify-on must be one of {", ".join(IDENTIFY_ON_CHOICES)}, '
                         f'got {opts.identify_on!r}.')
    design = opts.design
    if 0 < opts.seeds < 19:
        print_log(f'--seeds {opts.seeds}: the exploratory counts\' rank p-values cannot go below '
                  f'1/{opts.seeds + 1}, so they describe but cannot reach p < 0.05; pass --seeds '
                  '19 or more to test them (the primary count draws on its own).', 'current')
    if design.max_draws < 19:
        print_log(f'--max-draws {design.max_draws}: the primary tests cannot reach p < 0.05 '
                  '(the floor is 1/(1 + draws)); they will say inconclusive at best. Allow 19 or '
                  'more.', 'current')
    return design


def image_groups_checked(spec: Optional[str], dataset):
    """``--bootstrap-groups`` checked on the test image names before any compute; returns
    the labelling function for the per-image counts' images (None: images independent)."""
    if not spec:
        return None
    image_groups(dataset_image_paths(dataset), spec)
    return lambda images: image_groups(images, spec)


def check_attack_region(region: str, ranking: Optional[ChannelRanking]) -> None:
    """Fail before any work when the ranking (given, or identified later) lacks ``region``."""
    available = ranking.regions if ranking is not None else list(FLIP_DIFFERENCE_RULES)
    if region not in available:
        source = 'the ranking' if ranking is not None else 'identification on the fly'
        raise ValueError(f'unknown --attack-region {region!r}: {source} gives the orders '
                         f'{", ".join(available)}; pick one of them.')


def check_ranking_checkpoint(ranking, checkpoint_sha256: str, source: Optional[str],
                             allow: bool = False) -> None:
    """Refuse a ranking identified on another checkpoint (it records the checkpoint's
    sha256) unless ``allow``: the channels of one trained model are not those of another,
    even of the same architecture, so its 'targeted' removal would be a random one."""
    recorded = (ranking.model or {}).get('checkpoint_sha256') if ranking is not None else None
    if not recorded or recorded == checkpoint_sha256:
        return  # the authors' release and hand-made files record none: nothing to compare
    message = (f'the ranking {source} was identified on another checkpoint (sha256 '
               f'{recorded[:12]}..., this one is {checkpoint_sha256[:12]}...)')
    if allow:
        print_log(f'{message}; going on as --allow-ranking-from-other-checkpoint asks.',
                  'current')
        return
    raise ValueError(f'{message}: identify on this checkpoint (drop --ranking), or pass '
                     '--allow-ranking-from-other-checkpoint if a ranking transferred from '
                     'another model is what you mean to test.')
