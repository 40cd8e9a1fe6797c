"""Which channels to remove: the top of a ranking, a seeded random draw, or ids as given.

The three selection modes (:data:`SELECTION_MODES`) share one counting rule
(``round(fraction * C)``, at least 1) and one validation that runs before the tensor's
channel count C is known, so a bad config fails at build time, not after a pass.

Usage::

    select_channels('targeted', 2048, ranking=ranking, region='left', fraction=0.05)
    select_channels('random', 2048, num_channels=100, seed=3)
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np
import torch

from .modes import EXPLICIT, RANDOM, SELECTION_MODES, TARGETED
from .ranking import resolve_channel_count

__all__ = [
    'SELECTION_MODES', 'count_from_fraction', 'is_integer_at_least', 'random_channels',
    'select_channels', 'validate_selection_args',
]


# ----------------------------------------------------------------------------- replacement
def is_integer_at_least(value: Any, minimum: int) -> bool:
    """An int (or numpy integer), not a bool, and >= minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return False
    return value >= minimum


def check_channel_ids(channels: Iterable[int]) -> list[int]:
    """Channel ids as Python ints, after checking each is a non-negative integer."""
    if isinstance(channels, torch.Tensor):
        channels = channels.flatten().tolist()
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Iterable):
        raise TypeError(f'channels must be a list of integer ids, got {channels!r}.')
    ids = []
    for channel in channels:
        if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, numbers.Integral):
            raise TypeError(
                f'Channel ids must be integers, got {channel!r} ({type(channel).__name__}).')
        ids.append(int(channel))
    negative = [c for c in ids if c < 0]
    if negative:
        raise IndexError(
            f'Channel ids must be >= 0 (ids count from the first channel), got {negative[:10]}.')
    return ids


def channel_index(channels: Iterable[int], num_total: int, device: torch.device) -> torch.Tensor:
    """Channel ids as a LongTensor, after checking each lies in 0..num_total-1."""
    ids = check_channel_ids(channels)
    bad = [c for c in ids if c >= num_total]
    if bad:
        raise IndexError(f'Channel ids {bad[:10]} are out of range: the tensor has C={num_total} '
                         f'channels, so valid ids are 0..{num_total - 1}.')
    return torch.tensor(ids, dtype=torch.long, device=device)


# ----------------------------------------------------------------------------- selection
def count_from_fraction(fraction: float, num_total: int) -> int:
    """``round(fraction * C)``, at least 1: the rule the rankings and the sweep share."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ValueError(f'fraction must lie in (0, 1] (a share of the {num_total} channels), '
                         f'got {fraction!r}.')
    return resolve_channel_count(num_total, fraction=fraction)


def random_channels(num_total: int, num_channels: int, seed: int = 0) -> list[int]:
    """``num_channels`` distinct ids of ``0..num_total-1`` drawn with ``seed``.

    The draw is the order of ``num_total`` raw 64-bit outputs of numpy's PCG64 seeded with
    ``seed`` (stable argsort). The raw PCG64 stream is covered by numpy's compatibility policy
    (NEP 19) and PCG64 is platform independent, so a seed gives the same channels on every
    machine and numpy version; ``Generator.permutation`` carries no such promise. Draws are
    nested: the first N of a seed are the prefix of its first N+1.
    """
    if not is_integer_at_least(seed, 0):
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}.')
    keys = np.random.PCG64(int(seed)).random_raw(num_total)
    order = np.argsort(keys, kind='stable')
    return [int(c) for c in order[:num_channels]]


def validate_selection_args(mode: str,
                            num_channels: Optional[int] = None,
                            fraction: Optional[float] = None,
                            seed: int = 0,
                            channels: Optional[Sequence[int]] = None,
                            ranking: Any = None,
                            region: str = 'overall') -> None:
    """Check what can be checked before the tensor's channel count C is known."""
    if mode not in SELECTION_MODES:
        raise ValueError(f'Unknown selection mode {mode!r}; choose one of '
                         f'{", ".join(map(repr, SELECTION_MODES))}.')
    if mode == EXPLICIT:
        if channels is None:
            raise ValueError("mode='explicit' needs channels=[...], the channel ids to remove.")
        if num_channels is not None or fraction is not None:
            raise ValueError("mode='explicit' takes its channels from channels=[...]; set "
                             "num_channels=None and fraction=None.")
        ids = check_channel_ids(channels)
        if len(set(ids)) != len(ids):
            duplicates = sorted({c for c in ids if ids.count(c) > 1})
            raise ValueError(
                f'channels lists ids more than once: {duplicates[:10]}; give each id once.')
        return
    if channels is not None:
        raise ValueError(f"channels=[...] is only used with mode='explicit' (mode is {mode!r}); "
                         f"drop it or set mode='explicit'.")
    if (num_channels is None) == (fraction is None):
        raise ValueError(
            f"mode={mode!r} needs exactly one of num_channels (a count) or fraction "
            f"(a share in (0, 1]); got {'both' if num_channels is not None else 'neither'}.")
    if num_channels is not None and not is_integer_at_least(num_channels, 0):
        raise ValueError(f'num_channels must be an integer >= 0, got {num_channels!r}.')
    if fraction is not None:
        count_from_fraction(fraction, 1)
    if mode == RANDOM:
        if not is_integer_at_least(seed, 0):
            raise ValueError(f'seed must be a non-negative integer, got {seed!r}.')
    if mode == TARGETED:
        if ranking is None:
            raise ValueError("mode='targeted' needs a ranking (a ChannelRanking, e.g. "
                             "ChannelRanking.load('ranking.json') made by tools/identify.py); "
                             "or use mode='random'.")
        regions = list(ranking.regions)
        if region not in regions:
            raise ValueError(f'The ranking has no order for region {region!r}; available: '
                             f'{", ".join(regions)}.')


def select_channels(mode: str,
                    num_total: int,
                    ranking: Any = None,
                    region: str = 'overall',
                    num_channels: Optional[int] = None,
                    fraction: Optional[float] = None,
                    seed: int = 0,
                    channels: Optional[Sequence[int]] = None) -> list[int]:
    """The channel ids to remove from a tensor of ``num_total`` channels.

    ``'targeted'``: the first ``num_channels`` (or ``fraction`` of C) of ``ranking``'s order for
    ``region`` (overall/left/right/top/bottom: whatever orders it has). ``'random'``: as many
    drawn with ``seed`` (:func:`random_channels`, the same on every machine). ``'explicit'``:
    ``channels`` as given. ``fraction`` counts ``round(fraction * C)``, at least 1.

    Usage::

        select_channels('targeted', 2048, ranking=ranking, region='left', fraction=0.05)
        select_channels('random', 2048, num_channels=100, seed=3)
    """
    if not is_integer_at_least(num_total, 1):
        raise ValueError(f'num_total (the tensor\'s channel count C) must be a positive integer, '
                         f'got {num_total!r}.')
    validate_selection_args(mode, num_channels, fraction, seed, channels, ranking, region)
    if ranking is not None and int(ranking.num_channels) != num_total:
        raise ValueError(
            f'The ranking was made for a tensor of {ranking.num_channels} channels '
            f'(layer {getattr(ranking, "layer", "?")!r}), but this tensor has {num_total}. '
            'Identify the '
            'channels of this model and layer (tools/identify.py), or attack the layer the '
            'ranking '
            f'was made for.')
    if mode == EXPLICIT:
        ids = check_channel_ids(channels)
        channel_index(ids, num_total, torch.device('cpu'))
        return ids
    count = count_from_fraction(fraction, num_total) if fraction is not None else int(num_channels)
    if count > num_total:
        raise ValueError(f'Cannot remove {count} channels: the tensor has C={num_total}; pass '
                         f'num_channels in 0..{num_total} or a fraction in (0, 1].')
    if count == 0:
        return []
    if mode == TARGETED:
        return [int(c) for c in ranking.top(region, num_channels=count)]
    return random_channels(num_total, count, seed)
