"""Identify position channels over a dataloader: one method, one pass, one ChannelRanking.

:func:`identify_channels` is the standalone driver of an identification method (see
:mod:`posattack.identify.base`): for each batch it asks the method which extra views of the
images it needs (the flip difference: the horizontal and vertical flips), runs the images and
their views through the model *together* in one forward that stops at the attacked tensor,
and hands the tensors to the method. The sweep drives the same methods without a second
forward of the images themselves (:mod:`posattack.attack.sweep`).

Usage::

    loader = build_split_dataloader(cfg, split='val')     # posattack.data.dataloader
    ranking = identify_channels(model, loader, layer='backbone:3')
    ranking.save('work_dirs/ranking.json')
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Optional

import torch
from torch import nn

from ..channels.forward import forward_to_layer
from ..channels.layers import LayerRef, default_layer, resolve_layer, unwrap_model
from ..channels.ranking import ChannelRanking
from ..utils.datasets import describe_dataset, length_or_none
from .base import build_identification_method

__all__ = ['identify_channels']


def _group_by_shape(data: dict) -> list[dict]:
    """Split a collated batch into sub-batches of equal image size.

    mmseg's SegDataPreProcessor stacks test batches without resizing and refuses mixed sizes;
    grouping keeps ``data_preprocessor(data, False)`` exactly as mmseg evaluates each image.
    """
    inputs = data.get('inputs') if isinstance(data, dict) else None
    if not isinstance(inputs, (list, tuple)):
        return [data]
    samples = data.get('data_samples')
    groups: 'OrderedDict[tuple, list[int]]' = OrderedDict()
    for i, image in enumerate(inputs):
        groups.setdefault(tuple(image.shape), []).append(i)
    if len(groups) == 1:
        return [data]
    result = []
    for indices in groups.values():
        part = dict(data)
        part['inputs'] = [inputs[i] for i in indices]
        if samples is not None:
            part['data_samples'] = [samples[i] for i in indices]
        result.append(part)
    return result


def _preprocess(model: nn.Module, data: Any) -> tuple[torch.Tensor, Any]:
    """Images as the model sees them: ``model.data_preprocessor(data, False)`` where there is "
    "one."""
    preprocessor = getattr(model, 'data_preprocessor', None)
    if preprocessor is not None:
        data = preprocessor(data, False)
    elif isinstance(data, dict) and isinstance(data.get('inputs'), (list, tuple)):
        data = dict(data, inputs=torch.stack(list(data['inputs'])).float())
    if isinstance(data, torch.Tensor):
        return data, None
    if not isinstance(data, dict) or not isinstance(data.get('inputs'), torch.Tensor):
        raise ValueError(
            'Each batch must be an mmseg batch (dict with "inputs") or an image tensor; '
            f'got {type(data).__name__}.')
    return data['inputs'], data.get('data_samples')


def _valid_shapes(samples: Any, count: int) -> Optional[list[tuple[int, int]]]:
    if not samples:
        return None
    shapes = []
    for sample in samples[:count]:
        shape = getattr(sample, 'metainfo', {}).get('img_shape')
        if shape is None:
            return None
        shapes.append((int(shape[0]), int(shape[1])))
    return shapes


def _model_fingerprint(model: nn.Module, ref: LayerRef) -> dict[str, Any]:
    info: dict[str, Any] = {'model_type': type(model).__name__,
                            'layer_module': type(ref.module).__name__}
    cfg = getattr(model, 'cfg', None)
    filename = getattr(cfg, 'filename', None) if cfg is not None else None
    if filename:
        info['config'] = str(filename)
    return info


def identify_channels(model: nn.Module, dataloader: Iterable, layer: Optional[str] = None,
                      num_images: Optional[int] = None, progress: bool = True,
                      vertical: bool = True, model_info: Optional[dict] = None,
                      method: str = 'flip_difference') -> ChannelRanking:
    """Rank the channels of ``layer`` with ``method`` (by default the flip difference) over the
    images of ``dataloader``.

    ``dataloader`` yields mmseg batches (built from the config's test pipeline); they go through
    ``model.data_preprocessor(data, False)`` as in mmseg's evaluation. ``layer`` defaults to the
    tensor the decode head reads (:func:`posattack.channels.layers.default_layer`).
    ``num_images`` caps the images used (split evenly across processes in distributed runs).
    ``model_info`` is merged into
    the ranking's ``model`` fingerprint (e.g. the checkpoint hash). ``vertical=False`` asks the
    flip difference for the horizontal flip only.

    Usage::

        loader = build_split_dataloader(cfg, 'val')
        ranking = identify_channels(model, loader, num_images=100)
        ranking.top('overall', num_channels=100)
    """
    from mmengine.dist import get_dist_info
    from mmengine.utils import ProgressBar

    model = unwrap_model(model)
    ref = resolve_layer(model, layer if layer is not None else default_layer(model))
    if num_images is not None and (isinstance(num_images, bool) or not isinstance(num_images, int)
                                   or num_images < 1):
        raise ValueError(
            f'num_images must be a positive integer or None (all images), got {num_images!r}.')
    dataset = getattr(dataloader, 'dataset', None)
    if dataset is not None and len(dataset) == 0:
        raise ValueError(f'The dataset is empty ({describe_dataset(dataset)}): no images to '
                         f'identify channels with. Check data_root and the image folder.')

    rank, world_size = get_dist_info()
    limit = math.inf if num_images is None else math.ceil(num_images / world_size)
    # Images this process will see: its sampler's share, else the dataset, capped by the limit.
    available = length_or_none(getattr(dataloader, 'sampler', None))
    if available is None:
        available = length_or_none(dataset)
    total = min(limit, available if available is not None else math.inf)
    bar = ProgressBar(int(total)) if progress and rank == 0 and 0 < total < math.inf else None

    identification = build_identification_method(
        method, **(dict(vertical=vertical) if method == 'flip_difference' else {}))
    tensor_shape: Optional[list[int]] = None
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for data in dataloader:
                for part in _group_by_shape(data):
                    if seen >= limit:
                        break
                    inputs, samples = _preprocess(model, part)
                    take = int(min(inputs.shape[0], limit - seen))
                    inputs = inputs[:take]
                    views = identification.views(inputs, _valid_shapes(samples, take))
                    # The images and their views in one forward, cut apart afterwards.
                    batch = torch.cat([inputs] + views)
                    features = forward_to_layer(model, ref, batch)
                    if features.ndim < 2 or features.shape[0] != batch.shape[0]:
                        raise ValueError(
                            f'Layer {ref.name!r} produced a tensor of shape '
                            f'{tuple(features.shape)}; expected the batch ({batch.shape[0]}) '
                            f'first and channels second.')
                    if tensor_shape is None:
                        tensor_shape = [int(s) for s in features.shape[1:]]
                    parts = features.split(take)
                    identification.observe(parts[0], list(parts[1:]))
                    seen += take
                    if bar is not None:
                        bar.update(take)
                if seen >= limit:
                    break
    finally:
        model.train(was_training)
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()

    if tensor_shape is None:
        if world_size == 1:
            raise ValueError('The dataloader yielded no images: nothing to identify channels with.')
        # A rank with an empty shard must still join the collective sum.
        raise ValueError(f'Rank {rank} received no images; use fewer processes than images.')
    identification.all_reduce()
    info = _model_fingerprint(model, ref)
    info['tensor_shape'] = tensor_shape
    info.update(model_info or {})
    return identification.to_ranking(ref.name, info)
