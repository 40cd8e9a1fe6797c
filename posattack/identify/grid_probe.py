"""Frozen-backbone grid probe: how much position a trained segmentor encodes channel-wise.

The segmentor's weights stay fixed. Grid canvases (one patch in one cell of a g x g zero
canvas, normalised as the segmentor normalises its inputs) go through it up to the attacked
tensor (by default the one its decode head reads), and two read-outs are trained on it:

* the GAPNet read-out: a 1x1 convolution to g*g channels, then global average pooling. Both
  are linear, so pooling first and convolving the pooled vector is the same function; that
  is how it is trained (the features are pooled once, then cached);
* the PermuteNet read-out: pooling, a fresh random channel permutation per image, a linear layer.

The accuracy gap between the two is the position the tensor carries in *which* channel is
active. The GAPNet read-out's weights then rank the channels per cell: order ``cell_r_c``
lists channels by their weight for that cell's output, largest first (method
``'grid_probe'``), so the removal hook and tools/attack.py can attack any grid cell.

Read-outs act on standardised pooled channels (each channel's train mean and std are fixed
buffers of the read-out), so weights compare across channels of different scale. A softmax
read-out is unchanged when a constant is added to one channel's weights for every cell, so
each channel's weights are centred over the cells after training: the scores are the
weights, with that ambiguity removed.

Usage::

    model, cfg = load_segmentor(config, checkpoint)
    train_set, test_set = build_probe_datasets(model, 'data/synthetic_cityscapes', grid_size=3)
    result = frozen_grid_probe(model, train_set, test_set)
    result.ranking.save('probe_ranking.json')       # --attack-region cell_0_0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import default_collate
from mmengine.logging import print_log
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..channels.forward import forward_to_layer
from ..channels.layers import LayerRef, default_layer, resolve_layer, unwrap_model
from ..channels.ranking import ChannelRanking, order_by_score
from ..probes.accuracy import accuracy_summary
from ..probes.grid_data import GridPatchDataset, PackGridInputs, PlacePatchInGrid, cell_names
from ..probes.models import shuffle_channels

__all__ = [
    'FrozenProbeResult', 'GridReadout', 'METHOD', 'build_probe_datasets', 'frozen_grid_probe',
    'grid_probe_ranking', 'pooled_layer_features', 'segmentor_normalization', 'train_readout',
]

METHOD = 'grid_probe'


class GridReadout(nn.Module):
    """Pool, standardise, (optionally shuffle the channels), then a 1x1 conv to the classes.

    Takes a feature map (B, C, H, W) or already pooled activations (B, C); returns logits.

    Usage::

        readout = GridReadout(mean, std, num_classes=9)         # mean, std: (C,)
        logits = readout(features)                               # (B, 9)
    """

    def __init__(self,
                 mean: torch.Tensor,
                 std: torch.Tensor,
                 num_classes: int,
                 shuffle: bool = False):
        super().__init__()
        self.register_buffer('mean', torch.as_tensor(mean, dtype=torch.float32).view(-1))
        self.register_buffer('std', torch.as_tensor(std, dtype=torch.float32).view(-1))
        self.shuffle = bool(shuffle)
        self.conv = nn.Conv2d(self.mean.numel(), int(num_classes), kernel_size=1)

    def forward(self,
                features: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        pooled = features.flatten(2).mean(-1) if features.dim() > 2 else features
        pooled = (pooled - self.mean) / self.std
        if self.shuffle:
            pooled = shuffle_channels(pooled, generator)
        return self.conv(pooled[:, :, None, None]).flatten(1)

    @torch.no_grad()
    def centre_weights(self) -> None:
        """Subtract each channel's mean weight over the classes: the same softmax, unique "
        "weights."""
        self.conv.weight -= self.conv.weight.mean(dim=0, keepdim=True)


@dataclass
class FrozenProbeResult:
    """What :func:`frozen_grid_probe` found: accuracies (%), the gap, the ranking, the read-outs."""
    ranking: ChannelRanking
    gapnet_accuracy: float
    permutenet_accuracy: float
    chance_accuracy: float
    grid_size: int
    layer: str
    tensor_shape: list[int]
    num_train: int
    num_test: int
    readouts: dict[str, GridReadout] = field(default_factory=dict, repr=False)

    @property
    def accuracy_gap(self) -> float:
        """GAPNet minus PermuteNet read-out accuracy, in points."""
        return self.gapnet_accuracy - self.permutenet_accuracy

    def summary(self) -> dict[str, Any]:
        return {'layer': self.layer, 'grid_size': self.grid_size, 'tensor_shape': self.tensor_shape,
                'num_train': self.num_train, 'num_test': self.num_test,
                'gapnet_readout_accuracy': self.gapnet_accuracy,
                'permutenet_readout_accuracy': self.permutenet_accuracy,
                'chance_accuracy': self.chance_accuracy, 'accuracy_gap': self.accuracy_gap}


def segmentor_normalization(model: nn.Module) -> dict[str, Any]:
    """``mean``, ``std`` and ``to_bgr`` for :class:`PlacePatchInGrid`, as the model's preprocessor.

    mmseg loads images as BGR; a preprocessor with ``bgr_to_rgb`` turns them to RGB before it
    normalises, so the model sees RGB; without it the model sees BGR (``to_bgr=True``).
    """
    preprocessor = getattr(unwrap_model(model), 'data_preprocessor', None)
    if preprocessor is None or not getattr(preprocessor, '_enable_normalize', False):
        return {
            'mean': (0.0, 0.0, 0.0), 'std': (1.0, 1.0, 1.0), 'to_bgr': preprocessor is not None and
            not getattr(preprocessor, 'channel_conversion', False)
        }
    return {'mean': tuple(float(v) for v in preprocessor.mean.view(-1)),
            'std': tuple(float(v) for v in preprocessor.std.view(-1)),
            'to_bgr': not getattr(preprocessor, 'channel_conversion', False)}


def build_probe_datasets(model: nn.Module, data_root: Optional[str] = None, grid_size: int = 3,
                         patch_size: int = 32, patch_dir: Optional[str] = None,
                         test_patch_dir: Optional[str] = None, placements_per_patch: int = 1,
                         max_patches: Optional[int] = 2000, seed: int = 0,
                         **patch_options: Any) -> tuple[GridPatchDataset, GridPatchDataset]:
    """Train and test location datasets whose canvases are normalised as ``model`` expects.

    Patches come from Cityscapes-layout ``data_root`` (train and val splits) or from image
    folders ``patch_dir`` and ``test_patch_dir``. ``patch_options`` pass to
    :class:`GridPatchDataset` (``cell_size``, ``crop_size``, ``crop_stride``, ...).

    Usage::

        train_set, test_set = build_probe_datasets(model, 'data/synthetic_cityscapes', grid_size=3)
    """
    if (data_root is None) == (patch_dir is None):
        raise ValueError('Give exactly one patch source: data_root (Cityscapes layout) or '
                         'patch_dir (+ test_patch_dir), folders of images.')
    if patch_dir is not None and test_patch_dir is None:
        raise ValueError('With patch_dir, give test_patch_dir too: the read-out is tested on '
                         'patches it was not trained on.')
    pipeline = [PlacePatchInGrid(**segmentor_normalization(model)), PackGridInputs()]
    common = dict(grid_size=grid_size,
                  patch_size=patch_size,
                  task='location',
                  placements_per_patch=placements_per_patch,
                  max_patches=max_patches,
                  **patch_options)
    if data_root is not None:
        sources = (dict(cityscapes_root=data_root, split='train'),
                   dict(cityscapes_root=data_root, split='val'))
    else:
        sources = (dict(patch_dir=patch_dir), dict(patch_dir=test_patch_dir))
    train_set = GridPatchDataset(**common, **sources[0], seed=seed, pipeline=list(pipeline))
    test_set = GridPatchDataset(**common, **sources[1], seed=seed + 1, pipeline=list(pipeline),
                                test_mode=True)
    return train_set, test_set


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device('cpu')


@torch.no_grad()
def pooled_layer_features(model: nn.Module, layer: Union[str, LayerRef], dataset: Dataset,
                          batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Globally pooled activations of ``layer`` for every sample: (N, C), labels (N,), [C, H, W].

    The model runs in eval mode, only as far as the layer (no decode head).

    Usage::

        pooled, labels, shape = pooled_layer_features(model, 'backbone:3', test_set)
    """
    from mmengine.utils import ProgressBar

    model = unwrap_model(model)
    ref = resolve_layer(model, layer)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=default_collate)
    pooled, labels, shape = [], [], None
    progress = ProgressBar(len(dataset)) if len(dataset) > 4 * batch_size else None
    try:
        for batch in loader:
            features = forward_to_layer(model, ref, batch['inputs'].to(device))
            if features.dim() != 4:
                raise ValueError(
                    f'Layer {ref.name!r} gives a tensor of shape {tuple(features.shape)}; '
                    f'the grid probe pools a feature map (B, C, H, W). Choose a layer '
                    f'with spatial feature maps (see list_layer_names(model)).')
            shape = [int(s) for s in features.shape[1:]]
            pooled.append(features.float().flatten(2).mean(-1).cpu())
            labels.append(torch.as_tensor(batch['data_samples']).view(-1))
            if progress is not None:
                progress.update(len(features))
    finally:
        model.train(was_training)
    if not pooled:
        raise ValueError('The probe dataset is empty: no canvases to pool.')
    return torch.cat(pooled), torch.cat(labels).long(), shape


def train_readout(pooled: torch.Tensor,
                  labels: torch.Tensor,
                  num_classes: int,
                  shuffle: bool = False,
                  steps: int = 400,
                  lr: float = 0.05,
                  weight_decay: float = 1e-3,
                  seed: int = 0) -> GridReadout:
    """Fit a :class:`GridReadout` to cached pooled activations by full-batch Adam.

    ``weight_decay`` is an L2 penalty on the conv weights (it keeps the per-cell weights, i.e.
    the ranking scores, well defined when channels are redundant).
    """
    if pooled.dim() != 2 or len(pooled) != len(labels):
        raise ValueError(f'pooled must be (N, C) with one label per row, got {tuple(pooled.shape)} '
                         f'and {tuple(labels.shape)}.')
    generator = torch.Generator().manual_seed(seed)
    mean = pooled.mean(0)
    std = pooled.std(0, unbiased=False)
    std = torch.where(std > 1e-6 * (std.max() + 1e-12), std, torch.ones_like(std))  # dead channels
    readout = GridReadout(mean, std, num_classes, shuffle=shuffle)
    with torch.no_grad():
        readout.conv.weight.normal_(0, 0.01, generator=generator)
        readout.conv.bias.zero_()
    optimizer = torch.optim.Adam(readout.parameters(), lr=lr)
    readout.train()
    for _ in range(int(steps)):
        optimizer.zero_grad()
        loss = F.cross_entropy(readout(pooled, generator), labels)
        loss = loss + weight_decay * readout.conv.weight.pow(2).sum()
        loss.backward()
        optimizer.step()
    readout.eval()
    readout.centre_weights()
    return readout


@torch.no_grad()
def readout_accuracy(readout: GridReadout, pooled: torch.Tensor, labels: torch.Tensor,
                     draws: int = 5, seed: int = 1234) -> float:
    """Top-1 accuracy (%); a shuffling read-out is scored over ``draws`` permutations per sample."""
    generator = torch.Generator().manual_seed(seed)
    repeats = draws if readout.shuffle else 1
    predictions = torch.cat([readout(pooled, generator).argmax(1) for _ in range(repeats)])
    return accuracy_summary(predictions.tolist(), labels.repeat(repeats).tolist())['accuracy']


def grid_probe_ranking(readout: GridReadout, layer: str, grid_size: int,
                       num_images: Optional[int] = None,
                       model_info: Optional[dict] = None) -> ChannelRanking:
    """A ChannelRanking with one order per cell (``cell_r_c``) and ``overall``.

    Scores of ``cell_r_c``: each channel's (centred) read-out weight for that cell, ordered
    largest first. ``overall``: each channel's root-mean-square weight over the cells.

    Usage::

        ranking = grid_probe_ranking(result.readouts['gapnet'], 'backbone:3', grid_size=3)
        ranking.top('cell_0_0', num_channels=10)
    """
    weight = readout.conv.weight.detach()[:, :, 0, 0].double()  # (g*g, C)
    names = cell_names(grid_size)
    if weight.shape[0] != len(names):
        raise ValueError(
            f'The read-out has {weight.shape[0]} outputs, but a {grid_size}x{grid_size} '
            f'grid has {len(names)} cells.')
    scores = {name: weight[k].tolist() for k, name in enumerate(names)}
    scores['overall'] = weight.pow(2).mean(0).sqrt().tolist()
    rules = {name: {'score': name, 'descending': True} for name in ['overall'] + names}
    orders = {name: order_by_score(scores[name], descending=True) for name in rules}
    return ChannelRanking(layer=str(layer), num_channels=int(weight.shape[1]), method=METHOD,
                          num_images=num_images, orders=orders, scores=scores,
                          model=dict(model_info or {}), order_rules=rules)


def frozen_grid_probe(model: nn.Module, train_dataset: Dataset, test_dataset: Dataset,
                      layer: Optional[str] = None, steps: int = 400, lr: float = 0.05,
                      weight_decay: float = 1e-3, batch_size: int = 64, seed: int = 0,
                      model_info: Optional[dict] = None) -> FrozenProbeResult:
    """Train GAPNet and PermuteNet read-outs on a frozen segmentor's tensor; rank its channels.

    ``train_dataset`` / ``test_dataset`` are location :class:`GridPatchDataset`\\ s normalised
    as the model expects (see :func:`build_probe_datasets`). ``layer`` defaults to the tensor
    the decode head reads. The model's weights are never changed.

    Usage::

        result = frozen_grid_probe(model, train_set, test_set)
        print(result.gapnet_accuracy, result.permutenet_accuracy, result.accuracy_gap)
    """
    model = unwrap_model(model)
    grid_size = _grid_size_of(train_dataset)
    if _grid_size_of(test_dataset) != grid_size:
        raise ValueError(f'The train and test datasets use different grids '
                         f'({grid_size} and {_grid_size_of(test_dataset)}).')
    ref = resolve_layer(model, layer if layer is not None else default_layer(model))
    num_cells = grid_size * grid_size
    train_pooled, train_labels, shape = pooled_layer_features(model, ref, train_dataset, batch_size)
    test_pooled, test_labels, _ = pooled_layer_features(model, ref, test_dataset, batch_size)
    readouts, accuracies = {}, {}
    for name, shuffle in (('gapnet', False), ('permutenet', True)):
        readouts[name] = train_readout(train_pooled, train_labels, num_cells, shuffle=shuffle,
                                       steps=steps, lr=lr, weight_decay=weight_decay, seed=seed)
        accuracies[name] = readout_accuracy(readouts[name], test_pooled, test_labels)
    chance = 100.0 * float(np.bincount(test_labels.numpy(),
                                       minlength=num_cells).max()) / len(test_labels)
    info = dict(model_info or {})
    info.update({'tensor_shape': shape, 'grid_size': grid_size,
                 'cell_size': int(getattr(train_dataset, 'cell_size', 0)) or None,
                 'readout_accuracy': {'gapnet': accuracies['gapnet'],
                                      'permutenet': accuracies['permutenet'], 'chance': chance},
                 'num_test_images': len(test_labels)})
    cfg = getattr(model, 'cfg', None)
    if getattr(cfg, 'filename', None) and 'config' not in info:
        info['config'] = str(cfg.filename)
    ranking = grid_probe_ranking(readouts['gapnet'], ref.name, grid_size,
                                 num_images=len(train_labels), model_info=info)
    print_log(f'Grid probe of {ref.name} ({grid_size}x{grid_size}): GAPNet read-out '
              f'{accuracies["gapnet"]:.1f} %, PermuteNet read-out {accuracies["permutenet"]:.1f} % '
              f'(chance {chance:.1f} %)', logger='current')
    return FrozenProbeResult(ranking=ranking, gapnet_accuracy=accuracies['gapnet'],
                             permutenet_accuracy=accuracies['permutenet'], chance_accuracy=chance,
                             grid_size=grid_size, layer=ref.name, tensor_shape=shape,
                             num_train=len(train_labels), num_test=len(test_labels),
                             readouts=readouts)


def _grid_size_of(dataset: Any) -> int:
    grid_size = getattr(dataset, 'grid_size', None)
    if grid_size is None:
        grid_size = (getattr(dataset, 'metainfo', None) or {}).get('grid_size')
    if grid_size is None:
        raise ValueError(f'{type(dataset).__name__} does not say its grid size; use a '
                         f'GridPatchDataset (task="location").')
    task = getattr(dataset, 'task', 'location')
    if task != 'location':
        raise ValueError(
            f'The grid probe reads position: the datasets need task="location", got {task!r}.')
    return int(grid_size)
