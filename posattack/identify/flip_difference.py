"""Flip-difference identification of position-encoding channels (Islam et al., ICCV 2021).

For every image x, ``z(x)`` is the global average pool of the attacked tensor (one number per
channel). Flipping keeps the content and swaps left and right, so a channel whose pooled value
changes under the flip carries position rather than semantics:

* ``overall``: channels by mean ``|z(x) - z(hflip x)|``, largest first (the paper);
* ``left`` / ``right``: by the signed mean ``z(x) - z(hflip x)``, largest / smallest first
  (the paper);
* ``top`` / ``bottom``: the same with the vertical flip (our extension).

This is the one implementation, behind the interface of :mod:`posattack.identify.base`: the
method asks for the views ``hflip(x)`` and ``vflip(x)`` (:meth:`views`), and sums the pooled
differences it is shown (:meth:`observe`). The standalone driver runs x and its flips
concatenated in one forward; the sweep runs the flips beside the x it already has.

Usage::

    method = FlipDifferenceAccumulator(num_channels=2048)
    hflip, vflip = method.views(images)
    method.observe(features, [features_of(hflip), features_of(vflip)])
    ranking = method.all_reduce().to_ranking('backbone:3')
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

from ..channels.forward import global_average_pool
from ..channels.ranking import FLIP_DIFFERENCE_RULES, ChannelRanking, order_by_score
from .base import IdentificationMethod, register_identification_method

__all__ = ['FlipDifferenceAccumulator', 'flip_images']

METHOD = 'flip_difference'


@register_identification_method(METHOD)
class FlipDifferenceAccumulator(IdentificationMethod):
    """Running float64 sums of pooled-activation differences under flips.

    ``sums`` holds four vectors of length C (``abs_horizontal``, ``horizontal``,
    ``abs_vertical``, ``vertical``) and ``counts`` the number of images seen with a horizontal
    and with a vertical flip; all of them add up across processes (:meth:`all_reduce`) or
    across accumulators (:meth:`merge`).

    Usage::

        acc = FlipDifferenceAccumulator(num_channels=2048)
        acc.update(z, z_hflip, z_vflip)            # pooled activations, shape (B, C)
        ranking = acc.to_ranking('backbone:3', {'config': 'deeplabv3.py'})

    ``num_channels=None`` sizes the sums at the first batch; ``vertical=False`` asks for the
    horizontal flip only (no ``top`` / ``bottom`` orders).
    """
    SUM_KEYS = ('abs_horizontal', 'horizontal', 'abs_vertical', 'vertical')

    def __init__(self, num_channels: Optional[int] = None, vertical: bool = True):
        super().__init__(num_channels)
        self.vertical = bool(vertical)
        # [images with a horizontal flip, images with a vertical flip]; float64 so that one
        # packed tensor carries sums and counts through a single all_reduce.
        self.counts = torch.zeros(2, dtype=torch.float64)
        self.sums: dict[str, torch.Tensor] = {}
        if num_channels is not None:
            self._allocate(num_channels)

    def _allocate(self, num_channels: int) -> None:
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f'num_channels must be a positive integer, got {num_channels!r}.')
        self.num_channels = num_channels
        self.sums = {key: torch.zeros(num_channels, dtype=torch.float64) for key in self.SUM_KEYS}

    def views(self, images: torch.Tensor,
              valid_shapes: Optional[Sequence[Sequence[int]]] = None) -> list[torch.Tensor]:
        """``[hflip(images), vflip(images)]`` (only the first when ``vertical=False``)."""
        hflip, vflip = flip_images(images, valid_shapes)
        return [hflip, vflip] if self.vertical else [hflip]

    def observe(self, features: torch.Tensor, view_features: Sequence[torch.Tensor]) -> None:
        """Pool the attacked tensor of the images and of their flips, and add the differences."""
        if len(view_features) != (2 if self.vertical else 1):
            raise ValueError(f'observe needs the features of {2 if self.vertical else 1} views '
                             f'(see views()), got {len(view_features)}.')
        z = global_average_pool(features)
        if self.num_channels is None:
            self._allocate(int(z.shape[1]))
        self.update(z, global_average_pool(view_features[0]),
                    global_average_pool(view_features[1]) if self.vertical else None)

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
            raise ValueError(
                f'{name} must be pooled activations of shape (B, {self.num_channels}), '
                f'got {shape}.')
        z = z.detach().to(device='cpu', dtype=torch.float64)
        if not torch.isfinite(z).all():
            raise ValueError(f'{name} holds NaN or infinite values: the model output is not finite '
                             f'(check the checkpoint and the input normalisation).')
        return z

    def update(self, z: torch.Tensor, z_hflip: torch.Tensor,
               z_vflip: Optional[torch.Tensor] = None) -> None:
        """Add a batch: ``z`` for the images, ``z_hflip`` / ``z_vflip`` for their flips, all (B, "
        "C)."""
        if self.num_channels is None and isinstance(z, torch.Tensor) and z.ndim == 2:
            self._allocate(int(z.shape[1]))
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
        """Per-channel means: ``overall`` (|h|), ``horizontal`` (signed h), ``vertical`` (signed "
        "v)."""
        if self.count == 0:
            raise ValueError(
                'No images were accumulated: the flip-difference scores are undefined.')
        result = {
            'overall': (self.sums['abs_horizontal'] / self.count).tolist(),
            'horizontal': (self.sums['horizontal'] / self.count).tolist(),
        }
        if self.vertical_count:
            if self.vertical_count != self.count:
                raise ValueError(
                    f'{self.vertical_count} of {self.count} images came with a vertical '
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
