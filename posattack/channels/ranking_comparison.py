"""How far two channel rankings agree: Spearman rank correlation and top-k overlap per order.

Two rankings of the same tensor (e.g. the authors' released one and ours, identified on the
same weights) each give, per order (overall, left, ...), a permutation of the C channels.
For an order present in both:

* Spearman's rho between the two permutations. With p_a(c), p_b(c) the position of channel
  c in each order (no ties: every position occurs once),
  ``rho = 1 - 6 * sum_c (p_a(c) - p_b(c))^2 / (C (C^2 - 1))``: 1 for the same order, -1 for
  one the reverse of the other, about 0 for unrelated orders (computed with
  scipy.stats.spearmanr, which gives exactly this here).
* top-k overlap: ``|top_k(a) & top_k(b)| / k``, the share of the k channels removed first
  that both rankings would remove. This is what matters for the attack (it removes a top
  slice, never the whole order); for two independent random orders it is about k / C.

Usage::

    result = compare_rankings(ChannelRanking.load('authors_rankings', format='authors'),
                              ChannelRanking.load('work_dirs/attack/ranking.json'))
    result['orders']['overall']['spearman']            # e.g. 0.41
    result['orders']['overall']['top_k_overlap']['100']  # e.g. 0.37
    print(comparison_markdown(result))
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from .ranking import ChannelRanking

__all__ = ['DEFAULT_TOP_K', 'compare_orders', 'compare_rankings', 'comparison_markdown']

DEFAULT_TOP_K = (10, 50, 100)


def _spearman(order_a: Sequence[int], order_b: Sequence[int]) -> float:
    try:
        from scipy.stats import spearmanr
    except ImportError:
        raise ImportError('Comparing rankings needs scipy (a requirement of posattack): '
                          'pip install scipy, or rerun make setup.') from None
    position_a = [0] * len(order_a)
    position_b = [0] * len(order_b)
    for position, channel in enumerate(order_a):
        position_a[channel] = position
    for position, channel in enumerate(order_b):
        position_b[channel] = position
    return float(spearmanr(position_a, position_b)[0])


def compare_orders(order_a: Sequence[int], order_b: Sequence[int],
                   top_k: Sequence[int] = DEFAULT_TOP_K) -> dict[str, Any]:
    """Spearman's rho and top-k overlaps of two permutations of the same channels.

    A k larger than the number of channels is left out. Usage::

        compare_orders([0, 1, 2, 3], [1, 0, 2, 3], top_k=(1, 2))
        # {'spearman': 0.8, 'top_k_overlap': {'1': 0.0, '2': 1.0}, 'top_k_shared': {'1': 0, '2': 2}}
    """
    if sorted(order_a) != sorted(order_b) or sorted(order_a) != list(range(len(order_a))):
        raise ValueError('Both orders must be permutations of the same channels 0..C-1 '
                         f'(got {len(order_a)} and {len(order_b)} entries).')
    if len(order_a) < 2:
        raise ValueError('A rank correlation needs at least 2 channels.')
    shared, overlap = {}, {}
    for k in top_k:
        if not 1 <= int(k) <= len(order_a):
            continue
        count = len(set(order_a[:k]) & set(order_b[:k]))
        shared[str(k)] = count
        overlap[str(k)] = count / k
    return {'spearman': _spearman(order_a, order_b), 'top_k_overlap': overlap,
            'top_k_shared': shared}


def _describe(ranking: ChannelRanking) -> dict[str, Any]:
    return {'layer': ranking.layer, 'method': ranking.method, 'num_images': ranking.num_images,
            'orders': ranking.regions}


def compare_rankings(a: ChannelRanking, b: ChannelRanking,
                     top_k: Sequence[int] = DEFAULT_TOP_K) -> dict[str, Any]:
    """Per order present in both rankings: Spearman's rho and top-k overlap (as fractions).

    The result (JSON-ready)::

        {'num_channels': 2048, 'top_k': [10, 50, 100], 'same_layer': True,
         'a': {'layer': ..., 'method': ..., 'num_images': ..., 'orders': [...]}, 'b': {...},
         'orders': {'overall': {'spearman': ..., 'top_k_overlap': {'10': ..., ...},
                                'top_k_shared': {'10': ..., ...}}, ...},
         'only_in_a': [...], 'only_in_b': [...]}
    """
    if a.num_channels != b.num_channels:
        raise ValueError(f'The rankings cover different tensors: {a.num_channels} channels '
                         f'({a.layer}) against {b.num_channels} ({b.layer}); compare rankings '
                         'of the same layer of the same model.')
    common = [region for region in a.regions if region in b.orders]
    if not common:
        raise ValueError(f'The rankings share no order (a: {", ".join(a.regions)}; '
                         f'b: {", ".join(b.regions)}).')
    return {
        'num_channels': a.num_channels,
        'top_k': [int(k) for k in top_k if 1 <= int(k) <= a.num_channels],
        'same_layer': a.layer == b.layer,
        'a': _describe(a),
        'b': _describe(b),
        'orders': {region: compare_orders(a.orders[region], b.orders[region], top_k)
                   for region in common},
        'only_in_a': [region for region in a.regions if region not in b.orders],
        'only_in_b': [region for region in b.regions if region not in a.orders],
    }


def comparison_markdown(result: dict[str, Any], name_a: str = 'A',
                        name_b: str = 'B', note: Optional[str] = None) -> str:
    """The comparison as a Markdown table: one row per order."""
    top_k = result['top_k']
    lines = [f'Ranking comparison: {name_a} ({result["a"]["method"]}, {result["a"]["layer"]}) '
             f'vs {name_b} ({result["b"]["method"]}, {result["b"]["layer"]}), '
             f'{result["num_channels"]} channels.', '']
    if not result['same_layer']:
        lines += ['**The two rankings name different layers**: agreement means little unless '
                  'they are the same tensor.', '']
    header = ['order', 'Spearman rho'] + [f'top-{k} overlap' for k in top_k]
    lines.append('| ' + ' | '.join(header) + ' |')
    lines.append('|' + '---|' * len(header))
    for region, values in result['orders'].items():
        cells = [region, f'{values["spearman"]:+.3f}'] + [
            f'{values["top_k_overlap"][str(k)]:.2f} ({values["top_k_shared"][str(k)]}/{k})'
            for k in top_k]
        lines.append('| ' + ' | '.join(cells) + ' |')
    chance = ', '.join(f'top-{k} {k / result["num_channels"]:.3f}' for k in top_k)
    lines += ['', f'Two unrelated orders give rho near 0 and overlaps near k/C ({chance}).']
    for side, name in (('only_in_a', name_a), ('only_in_b', name_b)):
        if result[side]:
            lines.append(f'Orders only in {name}: {", ".join(result[side])}.')
    if note:
        lines += ['', note]
    return '\n'.join(lines) + '\n'
