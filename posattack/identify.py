"""Flip-difference identification of position-encoding channels (Islam et al., ICCV 2021).

For every image x, ``z(x)`` is the global average pool of the attacked tensor (one number per
channel). Flipping keeps the content and swaps left and right, so a channel whose pooled value
changes under the flip carries position rather than semantics:

* ``overall``: channels by mean ``|z(x) - z(hflip x)|``, largest first (the paper);
* ``left`` / ``right``: by the signed mean ``z(x) - z(hflip x)``, largest / smallest first (the paper);
* ``top`` / ``bottom``: the same with the vertical flip (our extension).

One forward pass per batch computes all of them: ``x``, ``hflip(x)`` and ``vflip(x)`` are
concatenated and run through the model only up to the attacked tensor (a hook stops the
forward there, so the decode head is never run for a backbone/neck layer).

Usage::

    loader = build_split_dataloader(cfg, split='val')
    ranking = identify_channels(model, loader, layer='backbone:3')
    ranking.save('work_dirs/ranking.json')
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch import nn

from .layers import LayerRef, capture, default_layer, resolve_layer, unwrap_model
from .ranking import FLIP_DIFFERENCE_RULES, ChannelRanking, order_by_score

__all__ = [
    'FlipDifferenceAccumulator', 'build_split_dataloader', 'flip_images', 'forward_to_layer',
    'global_average_pool', 'identify_channels',
]

METHOD = 'flip_difference'


class FlipDifferenceAccumulator:
    """Running float64 sums of pooled-activation differences under flips.

    ``sums`` holds four vectors of length C (``abs_horizontal``, ``horizontal``,
    ``abs_vertical``, ``vertical``) and ``counts`` the number of images seen with a horizontal
    and with a vertical flip; all of them add up across processes (:meth:`all_reduce`) or
    across accumulators (:meth:`merge`).

    Usage::

        acc = FlipDifferenceAccumulator(num_channels=2048)
        acc.update(z, z_hflip, z_vflip)            # pooled activations, shape (B, C)
        ranking = acc.to_ranking('backbone:3', {'config': 'deeplabv3.py'})
    """
    SUM_KEYS = ('abs_horizontal', 'horizontal', 'abs_vertical', 'vertical')

    def __init__(self, num_channels: int):
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f'num_channels must be a positive integer, got {num_channels!r}.')
        self.num_channels = num_channels
        self.sums = {key: torch.zeros(num_channels, dtype=torch.float64) for key in self.SUM_KEYS}
        # [images with a horizontal flip, images with a vertical flip]; float64 so that one
        # packed tensor carries sums and counts through a single all_reduce.
        self.counts = torch.zeros(2, dtype=torch.float64)

    @property
    def count(self) -> int:
        """Images accumulated (each with its horizontal flip)."""
        return int(self.counts[0].item())

    @property
    def vertical_count(self) -> int:
        """Images accumulated together with their vertical flip."""
        return int(self.counts[1].item())

    def _as_pooled(self, z: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.num_channels:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f'{name} must be pooled activations of shape (B, {self.num_channels}), '
                             f'got {shape}.')
        z = z.detach().to(device='cpu', dtype=torch.float64)
        if not torch.isfinite(z).all():
            raise ValueError(f'{name} holds NaN or infinite values: the model output is not finite '
                             f'(check the checkpoint and the input normalisation).')
        return z

    def update(self, z: torch.Tensor, z_hflip: torch.Tensor,
               z_vflip: Optional[torch.Tensor] = None) -> None:
        """Add a batch: ``z`` for the images, ``z_hflip`` / ``z_vflip`` for their flips, all (B, C)."""
        z = self._as_pooled(z, 'z')
        z_hflip = self._as_pooled(z_hflip, 'z_hflip')
        if z_hflip.shape != z.shape:
            raise ValueError(f'z {tuple(z.shape)} and z_hflip {tuple(z_hflip.shape)} must have '
                             f'the same shape.')
        if self.count and (z_vflip is not None) != (self.vertical_count == self.count):
            raise ValueError('Give z_vflip for every batch or for none: the vertical scores would '
                             'otherwise average over a different set of images.')
        horizontal = z - z_hflip
        self.sums['horizontal'] += horizontal.sum(0)
        self.sums['abs_horizontal'] += horizontal.abs().sum(0)
        self.counts[0] += z.shape[0]
        if z_vflip is not None:
            z_vflip = self._as_pooled(z_vflip, 'z_vflip')
            if z_vflip.shape != z.shape:
                raise ValueError(f'z {tuple(z.shape)} and z_vflip {tuple(z_vflip.shape)} must '
                                 f'have the same shape.')
            vertical = z - z_vflip
            self.sums['vertical'] += vertical.sum(0)
            self.sums['abs_vertical'] += vertical.abs().sum(0)
            self.counts[1] += z.shape[0]

    def merge(self, other: 'FlipDifferenceAccumulator') -> 'FlipDifferenceAccumulator':
        """Add another accumulator's sums into this one (e.g. from another shard). Returns self."""
        if other.num_channels != self.num_channels:
            raise ValueError(f'Cannot merge accumulators of {other.num_channels} and '
                             f'{self.num_channels} channels.')
        for key in self.SUM_KEYS:
            self.sums[key] += other.sums[key]
        self.counts += other.counts
        return self

    def all_reduce(self) -> 'FlipDifferenceAccumulator':
        """Sum the accumulators of all processes (no-op outside distributed runs). Returns self."""
        from mmengine.dist import all_reduce, get_world_size
        if get_world_size() > 1:
            packed = torch.cat([self.sums[key] for key in self.SUM_KEYS] + [self.counts])
            all_reduce(packed, op='sum')
            for i, key in enumerate(self.SUM_KEYS):
                self.sums[key] = packed[i * self.num_channels:(i + 1) * self.num_channels].clone()
            self.counts = packed[len(self.SUM_KEYS) * self.num_channels:].clone()
        return self

    def scores(self) -> dict[str, list[float]]:
        """Per-channel means: ``overall`` (|h|), ``horizontal`` (signed h), ``vertical`` (signed v)."""
        if self.count == 0:
            raise ValueError('No images were accumulated: the flip-difference scores are undefined.')
        result = {
            'overall': (self.sums['abs_horizontal'] / self.count).tolist(),
            'horizontal': (self.sums['horizontal'] / self.count).tolist(),
        }
        if self.vertical_count:
            if self.vertical_count != self.count:
                raise ValueError(f'{self.vertical_count} of {self.count} images came with a vertical '
                                 f'flip; give z_vflip for every batch or for none.')
            result['vertical'] = (self.sums['vertical'] / self.vertical_count).tolist()
        return result

    def to_ranking(self, layer: str, model_info: Optional[dict] = None) -> ChannelRanking:
        """Orders and scores as a :class:`ChannelRanking` (ties broken by channel id)."""
        scores = self.scores()
        rules = {region: dict(rule) for region, rule in FLIP_DIFFERENCE_RULES.items()
                 if rule['score'] in scores}
        orders = {region: order_by_score(scores[rule['score']], rule['descending'])
                  for region, rule in rules.items()}
        return ChannelRanking(layer=str(layer), num_channels=self.num_channels, method=METHOD,
                              num_images=self.count, orders=orders, scores=scores,
                              model=dict(model_info or {}), order_rules=rules)


def global_average_pool(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension after the channel one: (B, C, ...) -> (B, C)."""
    if tensor.ndim < 2:
        raise ValueError(f'Cannot pool a tensor of shape {tuple(tensor.shape)}: it needs a batch '
                         f'and a channel dimension (B, C, ...).')
    if tensor.ndim == 2:
        return tensor.float()
    return tensor.float().flatten(2).mean(-1)


def flip_images(inputs: torch.Tensor, valid_shapes: Optional[Sequence[Sequence[int]]] = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical flips of a (B, C, H, W) batch.

    ``valid_shapes`` gives each image's (h, w) before padding; only that part is flipped, so
    padding stays at the right/bottom and the flip swaps image content, not padding.
    """
    if inputs.ndim != 4:
        raise ValueError(f'Expected images of shape (B, C, H, W), got {tuple(inputs.shape)}.')
    height, width = inputs.shape[-2:]
    padded = valid_shapes is not None and any(
        (int(h), int(w)) != (height, width) for h, w in valid_shapes)
    if not padded:
        return inputs.flip(-1), inputs.flip(-2)
    hflip, vflip = inputs.clone(), inputs.clone()
    for i, (h, w) in enumerate(valid_shapes):
        h, w = min(int(h), height), min(int(w), width)
        hflip[i, :, :h, :w] = inputs[i, :, :h, :w].flip(-1)
        vflip[i, :, :h, :w] = inputs[i, :, :h, :w].flip(-2)
    return hflip, vflip


def _layer_runner(model: nn.Module, ref: LayerRef) -> Callable[[torch.Tensor], Any]:
    """The cheapest forward that reaches ``ref``: ``extract_feat`` for backbone/neck layers."""
    top = ref.module_path.split('.')[0]
    if hasattr(model, 'extract_feat') and top in ('backbone', 'neck'):
        return model.extract_feat
    if hasattr(model, 'extract_feat') and hasattr(model, 'data_preprocessor'):
        # An mmseg segmentor: mode='tensor' runs backbone, neck and decode head.
        return lambda inputs: model(inputs, None, mode='tensor')
    return model


def forward_to_layer(model: nn.Module, layer: Union[str, LayerRef], inputs: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``inputs`` only as far as ``layer`` and return that tensor.

    Usage::

        features = forward_to_layer(model, 'backbone:3', images)   # decode head not run
    """
    ref = resolve_layer(model, layer)
    run = _layer_runner(model, ref)
    with capture(model, ref, stop=True) as cap:
        run(inputs)
    if cap.output is None:
        try:
            suggestion = f', e.g. {default_layer(model)!r}'
        except ValueError:
            suggestion = ''
        raise RuntimeError(
            f'Layer {ref.name!r} did not run during the forward pass of {type(model).__name__} '
            f'(auxiliary heads run only in training); choose a layer on the inference '
            f'path{suggestion}.')
    return cap.output


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
    """Images as the model sees them: ``model.data_preprocessor(data, False)`` where there is one."""
    preprocessor = getattr(model, 'data_preprocessor', None)
    if preprocessor is not None:
        data = preprocessor(data, False)
    elif isinstance(data, dict) and isinstance(data.get('inputs'), (list, tuple)):
        data = dict(data, inputs=torch.stack(list(data['inputs'])).float())
    if isinstance(data, torch.Tensor):
        return data, None
    if not isinstance(data, dict) or not isinstance(data.get('inputs'), torch.Tensor):
        raise ValueError('Each batch must be an mmseg batch (dict with "inputs") or an image tensor; '
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


def _length(obj: Any) -> Optional[int]:
    try:
        return len(obj)
    except TypeError:
        return None


def _dataset_description(dataset: Any) -> str:
    parts = [type(dataset).__name__]
    for attribute in ('data_root', 'data_prefix', 'ann_file'):
        value = getattr(dataset, attribute, None)
        if value:
            parts.append(f'{attribute}={value!r}')
    return ', '.join(parts)


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
                      vertical: bool = True, model_info: Optional[dict] = None) -> ChannelRanking:
    """Rank the channels of ``layer`` by flip difference over the images of ``dataloader``.

    ``dataloader`` yields mmseg batches (built from the config's test pipeline); they go through
    ``model.data_preprocessor(data, False)`` as in mmseg's evaluation. ``layer`` defaults to the
    tensor the decode head reads (:func:`posattack.layers.default_layer`). ``num_images`` caps the
    images used (split evenly across processes in distributed runs). ``model_info`` is merged into
    the ranking's ``model`` fingerprint (e.g. the checkpoint hash).

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
        raise ValueError(f'num_images must be a positive integer or None (all images), got {num_images!r}.')
    dataset = getattr(dataloader, 'dataset', None)
    if dataset is not None and len(dataset) == 0:
        raise ValueError(f'The dataset is empty ({_dataset_description(dataset)}): no images to '
                         f'identify channels with. Check data_root and the image folder.')

    rank, world_size = get_dist_info()
    limit = math.inf if num_images is None else math.ceil(num_images / world_size)
    # Images this process will see: its sampler's share, else the dataset, capped by the limit.
    available = _length(getattr(dataloader, 'sampler', None))
    if available is None:
        available = _length(dataset)
    total = min(limit, available if available is not None else math.inf)
    bar = ProgressBar(int(total)) if progress and rank == 0 and 0 < total < math.inf else None

    accumulator: Optional[FlipDifferenceAccumulator] = None
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
                    hflip, vflip = flip_images(inputs, _valid_shapes(samples, take))
                    batch = torch.cat([inputs, hflip, vflip] if vertical else [inputs, hflip])
                    features = forward_to_layer(model, ref, batch)
                    if features.ndim < 2 or features.shape[0] != batch.shape[0]:
                        raise ValueError(
                            f'Layer {ref.name!r} produced a tensor of shape {tuple(features.shape)}; '
                            f'expected the batch ({batch.shape[0]}) first and channels second.')
                    pooled = global_average_pool(features)
                    if accumulator is None:
                        accumulator = FlipDifferenceAccumulator(int(pooled.shape[1]))
                        tensor_shape = [int(s) for s in features.shape[1:]]
                    accumulator.update(pooled[:take], pooled[take:2 * take],
                                       pooled[2 * take:] if vertical else None)
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

    if accumulator is None:
        if world_size == 1:
            raise ValueError('The dataloader yielded no images: nothing to identify channels with.')
        # A rank with an empty shard must still join the collective sum.
        raise ValueError(f'Rank {rank} received no images; use fewer processes than images.')
    accumulator.all_reduce()
    info = _model_fingerprint(model, ref)
    info['tensor_shape'] = tensor_shape
    info.update(model_info or {})
    return accumulator.to_ranking(ref.name, info)


class _PipelineNamingFiles:
    """Wrap a dataset pipeline so that a failure names the image it failed on.

    mmcv's LoadImageFromFile names an undecodable image, but only in an ``assert`` (gone
    under ``python -O``), and later transforms (a broken label map in LoadAnnotations, a
    failing Resize) name nothing.
    """

    def __init__(self, pipeline: Callable):
        self.pipeline = pipeline

    def __call__(self, data_info: dict) -> dict:
        path = data_info.get('img_path', '<unknown image>') if isinstance(data_info, dict) else '<unknown>'
        try:
            results = self.pipeline(data_info)
        except Exception as error:
            raise RuntimeError(f'Could not load or transform image {path}: '
                               f'{type(error).__name__}: {error}') from error
        if results is None:
            raise RuntimeError(f'The test pipeline dropped image {path} (unreadable or empty file?).')
        return results

    def __getattr__(self, name: str) -> Any:  # keep Compose's attributes (transforms, ...)
        if name == 'pipeline' or name.startswith('__'):  # unpickling in dataloader workers
            raise AttributeError(name)
        return getattr(self.pipeline, name)


def build_split_dataloader(cfg: Any, split: str = 'val', batch_size: Optional[int] = None,
                           num_workers: Optional[int] = None):
    """A dataloader over ``split`` with the config's test pipeline, as mmseg evaluates.

    ``test`` / ``val`` use ``cfg.test_dataloader`` / ``cfg.val_dataloader``; ``train`` uses the
    train dataset with the test pipeline (no augmentation) and no shuffling.

    Usage::

        cfg = Config.fromfile('configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py')
        loader = build_split_dataloader(cfg, 'val', batch_size=2)
    """
    from mmengine.registry import DATASETS, init_default_scope
    from mmengine.runner import Runner

    key = {'test': 'test_dataloader', 'val': 'val_dataloader', 'train': 'train_dataloader'}.get(split)
    if key is None:
        raise ValueError(f'Unknown split {split!r}; use one of: val, test, train.')
    if cfg.get(key) is None:
        raise ValueError(f'The config has no {key}; pick another split (val, test or train).')
    if split == 'train':
        evaluation = cfg.get('test_dataloader') or cfg.get('val_dataloader')
        if evaluation is None:
            raise ValueError('The train split needs the test pipeline, but the config has neither '
                             'test_dataloader nor val_dataloader.')
        loader_cfg = copy.deepcopy(evaluation)
        dataset_cfg = copy.deepcopy(cfg[key]['dataset'])
        dataset_cfg['pipeline'] = copy.deepcopy(evaluation['dataset']['pipeline'])
        dataset_cfg['test_mode'] = True
        loader_cfg['dataset'] = dataset_cfg
    else:
        loader_cfg = copy.deepcopy(cfg[key])
    loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f'batch_size must be at least 1, got {batch_size}.')
        loader_cfg['batch_size'] = batch_size
    if num_workers is not None:
        loader_cfg['num_workers'] = num_workers
        if num_workers == 0:
            loader_cfg['persistent_workers'] = False
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset_cfg = loader_cfg['dataset']
    empty_error = (f'The {split} dataset is empty ({{}}). Check data_root (override with '
                   f'--cfg-options {key}.dataset.data_root=...).')
    if isinstance(dataset_cfg, dict):
        try:
            # Lazily: mmengine's full_init fails on an empty file list with a bare numpy error.
            dataset = DATASETS.build(dict(dataset_cfg, lazy_init=True))
        except TypeError:  # a dataset class without lazy_init
            dataset = DATASETS.build(dataset_cfg)
        except FileNotFoundError as error:
            raise FileNotFoundError(f'Cannot build the {split} dataset: {error}. Check data_root '
                                    f'(override with --cfg-options {key}.dataset.data_root=...).') from error
    else:
        dataset = dataset_cfg
    if hasattr(dataset, 'full_init') and not getattr(dataset, '_fully_initialized', True):
        try:
            dataset.full_init()
        except ValueError as error:
            if hasattr(dataset, 'load_data_list') and not dataset.load_data_list():
                raise ValueError(empty_error.format(_dataset_description(dataset))) from error
            raise
    if len(dataset) == 0:
        raise ValueError(empty_error.format(_dataset_description(dataset)))
    if hasattr(dataset, 'pipeline'):
        dataset.pipeline = _PipelineNamingFiles(dataset.pipeline)
    loader_cfg['dataset'] = dataset
    return Runner.build_dataloader(loader_cfg)
