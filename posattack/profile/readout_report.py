"""The profile's read-out column in profile.md and its figure, ``position_by_layer.png``.

One table, one row per layer: channel concentration (Gini of the flip-difference scores),
the attack's targeted-minus-random gap at the fraction nearest 10% with its interval and p,
and the read-out's SPC and MAE on held-out images per target map with their intervals. One
figure, three panels over the same layers: read-out SPC per target map, Gini, gap.

Usage::

    lines = position_table(profile)                  # Markdown lines (rows need 'readout')
    plot_position_by_layer(profile, 'work_dirs/profile/position_by_layer.png')
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure

from ..readout.report import READOUT_LEGEND
from ..report.plots import save_figure
from ..report.statistics_markdown import fmt_ci, fmt_num, fmt_p, markdown_table

__all__ = ['POSITION_LEGEND', 'has_readout', 'plot_position_by_layer', 'position_table']

POSITION_LEGEND = (
    'Held vs used, per layer. Gini: concentration of the horizontal flip-difference scores. '
    'Gap: targeted minus mean random mIoU drop (points) at the fraction nearest 10%, 95% '
    'bootstrap interval, p over random draws. SPC / MAE: the position read-out on held-out '
    'images, mean over images [95% bootstrap interval]. ' + READOUT_LEGEND)
TARGET_COLORS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple')


def has_readout(profile: Mapping[str, Any]) -> bool:
    return bool(profile['layers']) and all('readout' in row for row in profile['layers'])


def _targets(profile: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys(t for row in profile['layers'] for t in row.get('readout', {})))


def _tenth(row: Mapping) -> Optional[Mapping]:
    attack = row.get('attack') or []
    if not attack:
        return None
    return min(attack, key=lambda e: (abs(e['num_channels'] - 0.1 * row['num_channels']),
                                      e['num_channels']))


def _estimate_ci(entry: Optional[Mapping]) -> str:
    entry = entry or {}
    text = fmt_num(entry.get('estimate'))
    return f'{text} {fmt_ci(entry.get("ci95"), sign=False)}' if entry.get('ci95') else text


def position_table(profile: Mapping[str, Any]) -> list[str]:
    """Markdown rows: layer, Gini h, gap at ~10% [CI] and p, then SPC and MAE per target."""
    targets = _targets(profile)
    header = ['layer', 'channels', 'Gini h', 'N', 'gap [95% CI]', 'p (draws)']
    for target in targets:
        header += [f'SPC {target}', f'MAE {target}']
    rows = []
    for row in profile['layers']:
        entry = _tenth(row) or {}
        gap = entry.get('targeted_minus_random', {})
        cells = [f'`{row["layer"]}`', str(row['num_channels']),
                 fmt_num(row['concentration']['horizontal']['gini']),
                 str(entry.get('num_channels', 'n/a')),
                 f'{fmt_num(gap.get("estimate"), sign=True)} {fmt_ci(gap.get("ci95"))}',
                 fmt_p((entry.get('targeted_vs_random_draws') or {}).get('p_value'))]
        for target in targets:
            natural = row.get('readout', {}).get(target, {}).get('natural', {})
            cells += [_estimate_ci(natural.get('spc')), _estimate_ci(natural.get('mae'))]
        rows.append(cells)
    return markdown_table(header, rows)


def _errorbar(ax, x, entries, **style) -> None:
    est = np.array([np.nan if (e or {}).get('estimate') is None else e['estimate']
                    for e in entries])
    low = np.array([est[i] - e['ci95'][0] if (e or {}).get('ci95') else 0.0
                    for i, e in enumerate(entries)])
    high = np.array([e['ci95'][1] - est[i] if (e or {}).get('ci95') else 0.0
                     for i, e in enumerate(entries)])
    ax.errorbar(x, est, yerr=[low, high], fmt='o-', capsize=3, **style)


def plot_position_by_layer(profile: Mapping[str, Any], path: str) -> str:
    """Read-out SPC per target (held-out images), Gini (h, v) and the gap, over the layers."""
    layers = profile['layers']
    x = np.arange(len(layers))
    fig = Figure(figsize=(max(7.0, 1.3 * len(layers) + 3), 8.5), layout='constrained')
    spc_ax, gini_ax, gap_ax = fig.subplots(3, 1, sharex=True)
    targets = _targets(profile)
    for i, target in enumerate(targets):
        entries = [row['readout'].get(target, {}).get('natural', {}).get('spc')
                   for row in layers]
        _errorbar(spc_ax, x + 0.04 * (i - (len(targets) - 1) / 2), entries,
                  color=TARGET_COLORS[i % len(TARGET_COLORS)], label=target)
    spc_ax.set_ylabel('read-out SPC\n(held-out images)')
    spc_ax.set_ylim(-0.3, 1.05)
    spc_ax.legend(fontsize=7, ncols=3)
    spc_ax.set_title('Position held (read-out) vs position used (attack), by layer')
    for direction, style in (('horizontal', '-'), ('vertical', '--')):
        gini = [row['concentration'][direction]['gini'] for row in layers]
        gini_ax.plot(x, [np.nan if g is None else g for g in gini], style, marker='s',
                     color='black', label=f'Gini, {direction} flip')
    gini_ax.set_ylabel('flip-difference Gini')
    gini_ax.set_ylim(0, 1.02)
    gini_ax.legend(fontsize=7)
    tenths = [_tenth(row) or {} for row in layers]
    _errorbar(gap_ax, x, [t.get('targeted_minus_random') for t in tenths], color='tab:red',
              label='targeted - random drop, ~10% of channels')
    gap_ax.axhline(0, color='black', linewidth=0.8)
    gap_ax.set_ylabel('mIoU points')
    gap_ax.legend(fontsize=7)
    gap_ax.set_xticks(x, [row['layer'] for row in layers], fontsize=8)
    for ax in (spc_ax, gini_ax, gap_ax):
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
