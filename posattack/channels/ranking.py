"""ChannelRanking: channels of one tensor ordered per region, with the scores behind each order.

A ranking file is JSON (``"format": "posattack.ranking/1"``)::

    {"format": "posattack.ranking/1", "layer": "backbone:3", "num_channels": 2048,
     "method": "flip_difference", "num_images": 500,
     "orders": {"overall": [...], "left": [...], "right": [...], "top": [...], "bottom": [...]},
     "scores": {"overall": [...], "horizontal": [...], "vertical": [...]},
     "order_rules": {"left": {"score": "horizontal", "descending": true}, ...},
     "model": {"config": ..., "checkpoint_sha256": ..., "tensor_shape": [C, H, W], ...}}

Every order is a permutation of ``0..C-1``, most position-specific channel first. Score
vectors are indexed by channel id. ``order_rules`` says which score vector sorts each order
and in which direction; loading checks that each order is indeed sorted by its score.
For the flip-difference method (see posattack/identify/flip_difference.py):

* ``scores["overall"]``: mean over images of ``|z(x) - z(hflip x)|`` -> order ``overall``
  (descending);
* ``scores["horizontal"]``: mean of ``z(x) - z(hflip x)`` -> ``left`` (descending), ``right``
  (ascending);
* ``scores["vertical"]``: mean of ``z(x) - z(vflip x)`` -> ``top`` (descending), ``bottom``
  (ascending).

The authors' release (three files of 2048 ids, no scores) loads with ``format='authors'``.

Usage::

    ranking = ChannelRanking.load('work_dirs/ranking.json')
    ranking.top('left', num_channels=100)        # the 100 most left-specific channels
    ranking.top('overall', fraction=0.05)        # the top 5 %
"""
from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ..utils.fileio import write_text_atomic
from .ranking_files import authors_files, guess_format, read_ranking_json, region_from_filename

__all__ = [
    'AUTHORS_LAYER', 'ChannelRanking', 'FLIP_DIFFERENCE_RULES', 'FORMAT_TAG', 'order_by_score',
    'resolve_channel_count',
]

FORMAT_TAG = 'posattack.ranking/1'

# Which score vector sorts each order of the flip-difference method, and in which direction.
FLIP_DIFFERENCE_RULES: dict[str, dict[str, Any]] = {
    'overall': {'score': 'overall', 'descending': True},
    'left': {'score': 'horizontal', 'descending': True},
    'right': {'score': 'horizontal', 'descending': False},
    'top': {'score': 'vertical', 'descending': True},
    'bottom': {'score': 'vertical', 'descending': False},
}

# The authors attacked the last stage of ResNet-50, the tensor mmseg's DeepLabv3 head reads.
AUTHORS_LAYER = 'backbone:3'

PathLike = Union[str, os.PathLike]


def order_by_score(scores: Sequence[float], descending: bool = True) -> list[int]:
    """Channel ids sorted by score; ties keep channel-id order (a stable, reproducible sort).

    Usage::

        order_by_score([0.1, 0.5, 0.5])                      # [1, 2, 0]
        order_by_score([0.1, 0.5, 0.5], descending=False)    # [0, 1, 2]
    """
    values = [float(v) for v in scores]
    if descending:
        return sorted(range(len(values)), key=lambda c: (-values[c], c))
    return sorted(range(len(values)), key=lambda c: (values[c], c))


def resolve_channel_count(num_total: int, num_channels: Optional[int] = None,
                          fraction: Optional[float] = None) -> int:
    """How many channels ``num_channels`` or ``fraction`` asks for, out of ``num_total``.

    Exactly one of the two is given. ``num_channels`` must lie in ``0..num_total``;
    ``fraction`` in ``(0, 1]`` gives ``round(fraction * num_total)``, at least 1.
    """
    if (num_channels is None) == (fraction is None):
        raise ValueError('Give exactly one of num_channels (a count) or fraction (in (0, 1]), '
                         f'got num_channels={num_channels!r}, fraction={fraction!r}.')
    if num_channels is not None:
        if isinstance(num_channels, bool):
            raise TypeError(f'num_channels must be an integer, got {num_channels!r}.')
        try:
            count = operator.index(num_channels)  # ints and numpy integers, not 2.5
        except TypeError:
            raise TypeError(f'num_channels must be an integer, got {num_channels!r}.') from None
        if not 0 <= count <= num_total:
            raise ValueError(f'num_channels={count} is out of range: the layer has {num_total} '
                             f'channels, so it must lie in 0..{num_total}.')
        return count
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise TypeError(f'fraction must be a number in (0, 1], got {fraction!r}.') from None
    if not (0.0 < value <= 1.0):
        raise ValueError(f'fraction={fraction!r} is out of range: it must lie in (0, 1] '
                         f'(e.g. 0.05 for 5 % of the {num_total} channels).')
    return max(1, int(round(value * num_total)))


def _dumps_two_levels(data: dict) -> str:
    """JSON with one line per top-level key and per key of nested dicts (long lists stay on one "
    "line)."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            inner = ',\n'.join(f'    {json.dumps(k)}: {json.dumps(v)}' for k, v in value.items())
            lines.append(f'  {json.dumps(key)}: {{\n{inner}\n  }}')
        else:
            lines.append(f'  {json.dumps(key)}: {json.dumps(value)}')
    return '{\n' + ',\n'.join(lines) + '\n}\n'


def _check_permutation(order: Any, num_channels: int, what: str) -> list[int]:
    if not isinstance(order, (list, tuple)):
        raise ValueError(f'{what} must be a list of channel ids, got {type(order).__name__}.')
    if any(isinstance(c, bool) or not isinstance(c, int) for c in order):
        raise ValueError(f'{what} must hold integer channel ids only.')
    if len(order) != num_channels:
        raise ValueError(f'{what} has {len(order)} entries but num_channels is {num_channels}; '
                         f'every order must list each channel once.')
    if sorted(order) != list(range(num_channels)):
        seen, duplicates = set(), []
        for c in order:
            if c in seen:
                duplicates.append(c)
            seen.add(c)
        outside = [c for c in order if not 0 <= c < num_channels]
        raise ValueError(f'{what} is not a permutation of 0..{num_channels - 1} '
                         f'(duplicates: {duplicates[:5]}, out of range: {outside[:5]}).')
    return list(order)


@dataclass
class ChannelRanking:
    """Channel orders (most position-specific first) for one layer, per region.

    Usage::

        ranking = ChannelRanking.load('ranking.json')
        ranking.regions              # ['overall', 'left', 'right', 'top', 'bottom']
        ranking.top('right', fraction=0.05)
    """
    layer: str
    num_channels: int
    method: str
    num_images: Optional[int]
    orders: dict[str, list[int]]
    scores: dict[str, list[float]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    order_rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistency in this ranking."""
        if isinstance(self.num_channels, bool) or not isinstance(self.num_channels, int) \
                or self.num_channels < 1:
            raise ValueError(f'num_channels must be a positive integer, got {self.num_channels!r}.')
        if not isinstance(self.layer, str) or not self.layer:
            raise ValueError(
                f'layer must be a non-empty string such as "backbone:3", got {self.layer!r}.')
        if not isinstance(self.orders, dict) or not self.orders:
            raise ValueError('A ranking needs at least one order (e.g. "overall").')
        if self.num_images is not None and (isinstance(self.num_images, bool)
                                            or not isinstance(self.num_images, int)
                                            or self.num_images < 0):
            raise ValueError(
                f'num_images must be a non-negative integer or null, got {self.num_images!r}.')
        self.orders = {
            str(region): _check_permutation(order, self.num_channels, f'Order {region!r}')
            for region, order in self.orders.items()
        }
        scores = {}
        for key, values in (self.scores or {}).items():
            if not isinstance(values, (list, tuple)) or len(values) != self.num_channels:
                length = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
                raise ValueError(f'Score vector {key!r} has length {length}; it must hold one '
                                 f'number per channel ({self.num_channels}).')
            try:
                floats = [float(v) for v in values]
            except (TypeError, ValueError):
                raise ValueError(f'Score vector {key!r} must hold numbers only.') from None
            if not all(math.isfinite(v) for v in floats):
                raise ValueError(f'Score vector {key!r} holds NaN or infinite values.')
            scores[str(key)] = floats
        self.scores = scores
        for region, rule in (self.order_rules or {}).items():
            self._check_rule(region, rule)

    def _check_rule(self, region: str, rule: dict[str, Any]) -> None:
        if region not in self.orders:
            raise ValueError(f'order_rules names order {region!r}, which the ranking does not have '
                             f'(orders: {", ".join(self.orders)}).')
        if not isinstance(rule, dict) or 'score' not in rule or 'descending' not in rule:
            raise ValueError(f'order_rules[{region!r}] must be '
                             f'{{"score": NAME, "descending": BOOL}}, got {rule!r}.')
        key = rule['score']
        if key not in self.scores:
            raise ValueError(f'order_rules[{region!r}] refers to score {key!r}, which is missing '
                             f'(scores: {", ".join(self.scores) or "none"}).')
        values = self.scores[key]
        order = self.orders[region]
        sign = -1.0 if rule['descending'] else 1.0
        for position in range(len(order) - 1):
            a, b = values[order[position]], values[order[position + 1]]
            if sign * (b - a) < 0:
                direction = 'descending' if rule['descending'] else 'ascending'
                raise ValueError(
                    f'Order {region!r} is not sorted {direction} by score {key!r}: channel '
                    f'{order[position]} ({a:.6g}) comes before channel {order[position + 1]} '
                    f'({b:.6g}).'
                )

    def check_compatible(self,
                         num_channels: int,
                         tensor_shape: Optional[Sequence[int]] = None) -> None:
        """Raise ``ValueError`` when this ranking does not fit the tensor it is about to edit.

        ``tensor_shape`` is the tensor as a hook sees it, batch first (``(B, C, H, W)``). The
        spatial size may differ from the one the ranking was computed at (other input sizes);
        the channel count and the number of dimensions may not.
        """
        if tensor_shape is not None:
            shape = [int(s) for s in tensor_shape]
            if len(shape) < 2:
                raise ValueError(f'tensor_shape {tuple(shape)} has no channel dimension; '
                                 f'expected (B, C, ...).')
            if num_channels is not None and int(num_channels) != shape[1]:
                raise ValueError(
                    f'num_channels={num_channels} disagrees with tensor_shape {tuple(shape)}.')
            num_channels = shape[1]
            recorded = (self.model or {}).get('tensor_shape')
            if recorded is not None and len(recorded) != len(shape) - 1:
                raise ValueError(
                    f'Ranking for layer {self.layer!r} was computed on a tensor of shape '
                    f'{tuple(recorded)} per image, but the model\'s tensor has shape '
                    f'{tuple(shape)}: '
                    'a different kind of layer. Recompute it with tools/identify.py for this '
                    'layer.'
                )
        if num_channels is not None and int(num_channels) != self.num_channels:
            raise ValueError(
                f'Ranking for layer {self.layer!r} has {self.num_channels} channels, but the '
                'model\'s '
                f'tensor has {int(num_channels)}: it belongs to a different model or layer. '
                'Recompute '
                f'it with `python tools/identify.py CONFIG CHECKPOINT --layer LAYER`.')

    # ------------------------------------------------------------------ query
    @property
    def regions(self) -> list[str]:
        """Names of the orders this ranking holds, e.g. ``['overall', 'left', 'right']``."""
        return list(self.orders)

    def top(self, region: str, num_channels: Optional[int] = None,
            fraction: Optional[float] = None) -> list[int]:
        """The first ``num_channels`` (or ``fraction`` of all) channels of ``region``'s order.

        Usage::

            ranking.top('overall', num_channels=100)
            ranking.top('left', fraction=0.05)
        """
        if region not in self.orders:
            raise KeyError(f'Unknown region {region!r} for this ranking; available: '
                           f'{", ".join(self.orders)}.')
        count = resolve_channel_count(self.num_channels, num_channels, fraction)
        return list(self.orders[region][:count])

    # ---------------------------------------------------------------- in / out
    def to_dict(self) -> dict[str, Any]:
        return {
            'format': FORMAT_TAG,
            'layer': self.layer,
            'num_channels': self.num_channels,
            'method': self.method,
            'num_images': self.num_images,
            'orders': {k: list(v) for k, v in self.orders.items()},
            'scores': {k: list(v) for k, v in self.scores.items()},
            'order_rules': {k: dict(v) for k, v in self.order_rules.items()},
            'model': dict(self.model),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = 'ranking') -> 'ChannelRanking':
        if not isinstance(data, dict):
            raise ValueError(f'{source}: expected a JSON object, got {type(data).__name__}.')
        tag = data.get('format')
        if tag != FORMAT_TAG:
            looks_like_authors = len(data) == 1 and isinstance(next(iter(data.values())), list)
            hint = (" It looks like one of the authors' release files: load it with "
                    "format='authors'." if looks_like_authors else '')
            raise ValueError(f'{source}: not a posattack ranking (format tag {tag!r}, expected '
                             f'{FORMAT_TAG!r}).{hint}')
        missing = [k for k in ('layer', 'num_channels', 'method', 'orders') if k not in data]
        if missing:
            raise ValueError(f'{source}: ranking file lacks {", ".join(missing)}.')
        try:
            return cls(layer=data['layer'],
                       num_channels=data['num_channels'],
                       method=data['method'],
                       num_images=data.get('num_images'),
                       orders=data['orders'],
                       scores=data.get('scores') or {},
                       model=data.get('model') or {},
                       order_rules=data.get('order_rules') or {})
        except ValueError as error:
            raise ValueError(f'{source}: {error}') from None

    def save(self, path: PathLike) -> Path:
        """Write the ranking as JSON, atomically (a crash never leaves half a file). Returns the "
        "path."""
        self.validate()
        path = Path(path)
        write_text_atomic(path, _dumps_two_levels(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: Union[PathLike, Sequence[PathLike]], format: str = 'posattack',
             layer: Optional[str] = None) -> 'ChannelRanking':
        """Read a ranking: a posattack JSON file, or the authors' release (``format='authors'``).

        For ``'authors'``, ``path`` is one file, a list of files or a directory of them; the
        region comes from the file name (``left_...``/``right_...``), else from the file's key.
        ``'auto'`` picks ``'authors'`` for a directory, a list, or a file without a format tag.
        ``layer`` overrides the layer recorded (authors default: ``'backbone:3'``).

        Usage::

            ChannelRanking.load('ranking.json')
            ChannelRanking.load('configs/paper/authors_rankings', format='authors')
        """
        if format == 'auto':
            format = guess_format(path)
        if format == 'authors':
            return cls._load_authors(path, layer=layer or AUTHORS_LAYER)
        if format != 'posattack':
            raise ValueError(
                f"Unknown ranking format {format!r}; use 'posattack', 'authors' or 'auto'.")
        if isinstance(path, (list, tuple)):
            raise ValueError(
                "A list of files is the authors' release layout; pass format='authors'.")
        path = Path(path)
        if path.is_dir():
            raise ValueError(
                f"{path} is a directory; a posattack ranking is one JSON file (for the "
                f"authors' directory of files pass format='authors').")
        data = read_ranking_json(path)
        ranking = cls.from_dict(data, source=str(path))
        if layer is not None:
            ranking.layer = layer
        return ranking

    @classmethod
    def _load_authors(cls, path: Union[PathLike, Sequence[PathLike]],
                      layer: str) -> 'ChannelRanking':
        files = authors_files(path)
        orders: dict[str, list[int]] = {}
        origin: dict[str, str] = {}
        for file in files:
            data = read_ranking_json(file)
            if not (isinstance(data, dict) and len(data) == 1
                    and isinstance(next(iter(data.values())), list)):
                raise ValueError(
                    f"{file}: not an authors' ranking file (expected one key mapping to a "
                    f"list of channel ids).")
            key, order = next(iter(data.items()))
            # Their right-hand file carries the key "left" too: the file name is the reliable part.
            region = region_from_filename(file.name) or str(key)
            if region in orders:
                raise ValueError(
                    f'Two files give the {region!r} order: {origin[region]} and {file.name}.')
            orders[region] = order
            origin[region] = file.name
        sizes = {region: len(order) for region, order in orders.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"The authors' files disagree on the channel count: {sizes}.")
        preferred = [r for r in ('overall', 'left', 'right', 'top', 'bottom') if r in orders]
        orders = {r: orders[r] for r in preferred + [r for r in orders if r not in preferred]}
        try:
            return cls(layer=layer,
                       num_channels=next(iter(sizes.values())),
                       method='authors_release',
                       num_images=None,
                       orders=orders,
                       model={'source': 'Islam et al., ICCV 2021, public release',
                              'files': {r: origin[r] for r in orders}})
        except ValueError as error:
            raise ValueError(
                f"Authors' ranking ({', '.join(f.name for f in files)}): {error}") from None

