"""profile.md and the three plots of a depth profile (posattack.profile.run's profile.json).

* ``concentration_vs_depth.png``: per layer, the share of the total flip-difference score
  held by its top 1/5/10% of channels and the Gini coefficient; horizontal flips solid,
  vertical dashed. High values: position sits in few channels at that depth.
* ``gap_vs_depth.png``: per layer and fraction, targeted drop minus mean random drop (mIoU
  points, full image) with its paired-bootstrap 95% interval. Above 0: the layer's
  flip-difference channels matter more to the prediction than as many random ones.
* ``class_drop_by_layer.png``: one panel per layer, per class IoU drop of targeted removal
  and of random removal (mean over draws) at the fraction nearest 10%.

Figures are ``matplotlib.figure.Figure`` rendered by Agg (no pyplot), written atomically.

Usage::

    paths = write_profile_report('work_dirs/profile', profile, per_layer_results)
    paths['markdown']      # work_dirs/profile/profile.md
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure

from ..channels.modes import CLEAN, RANDOM, TARGETED
from ..report.plots import save_figure
from ..report.statistics_markdown import fmt_ci, fmt_num, fmt_p, markdown_table
from ..utils.fileio import write_text_atomic
from .concentration import DEFAULT_SHARE_FRACTIONS, share_key
from .readout_report import POSITION_LEGEND, has_readout, plot_position_by_layer, position_table

SHARE_COLORS = ('tab:red', 'tab:orange', 'tab:olive')
FRACTION_COLORS = ('tab:blue', 'tab:red', 'tab:green', 'tab:purple', 'tab:brown')
CONCENTRATION_LEGEND = (
    'Share of the total flip-difference score (mean |z(x) - z(flip x)| per channel) held by the '
    'top 1/5/10% of channels (at least one channel), and the Gini coefficient (0: spread '
    'evenly, (C-1)/C: one channel). h: horizontal flip, v: vertical flip.')
ATTACK_LEGEND = (
    'Drops are clean minus attacked mIoU (points, full image). Gap: targeted drop minus mean '
    'random drop, with its 95% bootstrap interval over images; p: rank of the targeted drop '
    'among the random draws; periphery - center: of the targeted removal\'s drop.')


def _nearest_tenth(attack: Sequence[Mapping], num_channels: int) -> Optional[Mapping]:
    """The attack entry whose N is nearest 10% of the channels (the paper's headline)."""
    if not attack:
        return None
    return min(attack, key=lambda e: (abs(e['num_channels'] - 0.1 * num_channels),
                                      e['num_channels']))


def plot_concentration_vs_depth(profile: Mapping[str, Any], path: str) -> str:
    layers = profile['layers']
    x = np.arange(len(layers))
    fig = Figure(figsize=(max(6.0, 1.2 * len(layers) + 2), 4.2), layout='constrained')
    ax = fig.subplots()
    for direction, style in (('horizontal', '-'), ('vertical', '--')):
        for fraction, color in zip(DEFAULT_SHARE_FRACTIONS, SHARE_COLORS):
            values = [row['concentration'][direction][share_key(fraction)] for row in layers]
            ax.plot(x, [np.nan if v is None else v for v in values], style, marker='o',
                    color=color, label=f'{share_key(fraction)} share, {direction}')
        gini = [row['concentration'][direction]['gini'] for row in layers]
        ax.plot(x, [np.nan if v is None else v for v in gini], style, marker='s',
                color='black', label=f'Gini, {direction}')
    ax.set_xticks(x, [f'{row["layer"]}\n({row["num_channels"]} ch)' for row in layers],
                  fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel('share of total |flip difference| / Gini')
    ax.set_title('Position concentration vs depth (solid: horizontal flip, dashed: vertical)')
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_gap_vs_depth(profile: Mapping[str, Any], path: str) -> str:
    layers = profile['layers']
    x = np.arange(len(layers))
    fractions = profile['fractions']
    fig = Figure(figsize=(max(6.0, 1.2 * len(layers) + 2), 4.2), layout='constrained')
    ax = fig.subplots()
    width = 0.8 / max(1, len(fractions))
    for i, fraction in enumerate(fractions):
        estimates, lows, highs = [], [], []
        for row in layers:
            entry = next((e for e in row['attack'] if e.get('fraction') is not None
                          and abs(e['fraction'] - fraction) < 1e-9), None)
            gap = (entry or {}).get('targeted_minus_random', {})
            estimate, ci = gap.get('estimate'), gap.get('ci95')
            estimates.append(np.nan if estimate is None else estimate)
            lows.append(np.nan if not ci else estimate - ci[0])
            highs.append(np.nan if not ci else ci[1] - estimate)
        offset = (i - (len(fractions) - 1) / 2) * width
        ax.errorbar(x + offset, estimates, yerr=[lows, highs], fmt='o-', capsize=3,
                    color=FRACTION_COLORS[i % len(FRACTION_COLORS)],
                    label=f'{fraction * 100:g}% of the channels')
    ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xticks(x, [row['layer'] for row in layers], fontsize=8)
    ax.set_ylabel('targeted - random mIoU drop (points)')
    ax.set_title('Targeted minus random removal vs depth (95% bootstrap interval)')
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def class_drops(results: Mapping[str, Any], num_channels: int, region: str = 'full'
                ) -> tuple:
    """(class names, targeted drop, mean random drop) per class at ``num_channels``; NaN where
    a class's IoU is undefined."""
    names = list(results['class_names'])

    def ious(setting):
        table = setting['per_class'].get(region, {})
        return np.array([np.nan if table.get(c, {}).get('IoU') is None else table[c]['IoU']
                         for c in names], dtype=np.float64)

    clean = next(s for s in results['settings'] if s['mode'] == CLEAN)
    targeted = [s for s in results['settings'] if s['mode'] == TARGETED
                and int(s['num_channels']) == num_channels]
    randoms = [s for s in results['settings'] if s['mode'] == RANDOM
               and int(s['num_channels']) == num_channels]
    clean_iou = ious(clean)
    targeted_drop = clean_iou - ious(targeted[0]) if targeted else np.full(len(names), np.nan)
    if randoms:
        stacked = np.stack([ious(s) for s in randoms])
        counts = np.isfinite(stacked).sum(axis=0)
        # a mean over the draws where the class is defined; NaN where it is in none
        means = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
        random_drop = clean_iou - means
    else:
        random_drop = np.full(len(names), np.nan)
    return names, targeted_drop, random_drop


def plot_class_drop_by_layer(profile: Mapping[str, Any], per_layer: Mapping[str, Mapping],
                             path: str) -> str:
    layers = profile['layers']
    fig = Figure(figsize=(8, 2.2 * len(layers) + 1.2), layout='constrained')
    axes = np.atleast_1d(fig.subplots(len(layers), 1, sharex=True, squeeze=False)[:, 0])
    panels = []
    for row in layers:
        entry = _nearest_tenth(row['attack'], row['num_channels'])
        drops = class_drops(per_layer[row['layer']], entry['num_channels']) if entry else None
        panels.append((row, entry, drops))
    # only classes some layer scores: absent classes would be empty columns
    names = next((d[0] for _, _, d in panels if d is not None), [])
    keep = np.zeros(len(names), dtype=bool)
    for _, _, drops in panels:
        if drops is not None:
            keep |= np.isfinite(drops[1]) | np.isfinite(drops[2])
    shown = [name for name, k in zip(names, keep) if k]
    x = np.arange(len(shown))
    for ax, (row, entry, drops) in zip(axes, panels):
        if drops is None:
            ax.set_title(f'{row["layer"]}: no attack setting')
            continue
        targeted, random = drops[1][keep], drops[2][keep]
        ax.bar(x - 0.2, np.nan_to_num(targeted), 0.4, color='tab:red', label='targeted')
        ax.bar(x + 0.2, np.nan_to_num(random), 0.4, color='tab:gray', label='random (mean)')
        ax.axhline(0, color='black', linewidth=0.6)
        ax.set_title(f'{row["layer"]}: {entry["num_channels"]} of {row["num_channels"]} '
                     'channels removed', fontsize=9)
        ax.set_ylabel('IoU drop')
        ax.grid(alpha=0.3, axis='y')
    axes[0].legend(fontsize=8)
    if shown:
        axes[-1].set_xticks(x, shown, rotation=60, ha='right', fontsize=8)
    fig.suptitle('Per-class IoU drop by layer (full image; clean minus attacked)')
    return save_figure(fig, path)


def _share(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.2f}'


def concentration_table(profile: Mapping[str, Any]) -> list[str]:
    """Markdown rows: per layer, top 1/5/10% shares and Gini, horizontal and vertical."""
    header = ['layer', 'channels'] + [f'{share_key(f)} h' for f in DEFAULT_SHARE_FRACTIONS] + \
        ['Gini h'] + [f'{share_key(f)} v' for f in DEFAULT_SHARE_FRACTIONS] + ['Gini v', 'read by']
    rows = []
    for row in profile['layers']:
        h, v = row['concentration']['horizontal'], row['concentration']['vertical']
        cells = [f'`{row["layer"]}`', str(row['num_channels'])]
        for values in (h, v):
            cells += [_share(values[share_key(f)]) for f in DEFAULT_SHARE_FRACTIONS]
            cells.append(_share(values['gini']))
        rows.append(cells + ['head' if row['path'] == 'fast' else 'next stage (hook)'])
    return markdown_table(header, rows)


def attack_table(profile: Mapping[str, Any]) -> list[str]:
    """Markdown rows: per layer and N, drops, gap with CI, p over draws, periphery - center."""
    header = ['layer', 'N removed', 'targeted drop', 'random drop', 'gap [95% CI]', 'p (draws)',
              'gap verdict', 'periphery - center [95% CI]']
    rows = []
    for row in profile['layers']:
        for entry in row['attack']:
            gap = entry.get('targeted_minus_random', {})
            draws = entry.get('targeted_vs_random_draws', {})
            pc = entry.get('periphery_minus_center_targeted', {})
            rows.append([f'`{row["layer"]}`', f'{entry["num_channels"]}/{row["num_channels"]}',
                         fmt_num((entry.get('targeted_drop') or {}).get('estimate')),
                         fmt_num((entry.get('random_drop') or {}).get('estimate')),
                         f'{fmt_num(gap.get("estimate"), sign=True)} {fmt_ci(gap.get("ci95"))}',
                         fmt_p(draws.get('p_value')), gap.get('verdict', 'not computed'),
                         f'{fmt_num(pc.get("estimate"), sign=True)} {fmt_ci(pc.get("ci95"))}'])
    return markdown_table(header, rows)


def profile_markdown(profile: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """profile.md: concentration table, attack table, plots, how to read them."""
    fractions = ', '.join(f'{f * 100:g}%' for f in profile['fractions'])
    lines = [f'# Position profile of `{osp.basename(profile["config"])}`', '',
             f'Checkpoint `{profile["checkpoint"]}`, {profile["num_images"]} test images; '
             f'layers in the order profiled (by default shallowest first). Attack: targeted '
             f'(each layer\'s own flip-difference ranking) vs random removal of {fractions} '
             f'of its channels, {profile["seeds"]} random draws per N, '
             f'{profile["bootstrap"]} image-bootstrap resamples.', '',
             '## Where position is concentrated', '',
             CONCENTRATION_LEGEND, '']
    lines += concentration_table(profile) + ['']
    if has_readout(profile):
        lines += ['## Position held (read-out) vs position used (attack)', '', POSITION_LEGEND,
                  ''] + position_table(profile) + ['']
        if plots.get('position'):
            lines += [f'![Position by layer]({osp.basename(plots["position"])})', '']
    lines += ['## Where removing them hurts', '', ATTACK_LEGEND, '']
    lines += attack_table(profile) + ['']
    lines += ['Layers marked "next stage (hook)" sit inside the backbone: the decode head does '
              'not read them, the next stage\'s convolutions do, so the removal edits what every '
              'later layer sees. Each layer\'s full report (per region, per class, all tests) is '
              'in `layers/<layer>/report.md`.', '']
    for title, key in (('Concentration vs depth', 'concentration'), ('Gap vs depth', 'gap'),
                       ('Per-class drop by layer', 'class_drop')):
        if plots.get(key):
            lines += [f'![{title}]({osp.basename(plots[key])})', '']
    return '\n'.join(lines)


def write_profile_report(work_dir: str, profile: Mapping[str, Any],
                         per_layer: Mapping[str, Mapping]) -> dict[str, str]:
    """The three plots and profile.md in ``work_dir``; returns their paths."""
    paths = dict(
        concentration=plot_concentration_vs_depth(
            profile, osp.join(work_dir, 'concentration_vs_depth.png')),
        gap=plot_gap_vs_depth(profile, osp.join(work_dir, 'gap_vs_depth.png')),
        class_drop=plot_class_drop_by_layer(profile, per_layer,
                                            osp.join(work_dir, 'class_drop_by_layer.png')))
    if has_readout(profile):
        paths['position'] = plot_position_by_layer(
            profile, osp.join(work_dir, 'position_by_layer.png'))
    paths['markdown'] = write_text_atomic(osp.join(work_dir, 'profile.md'),
                                          profile_markdown(profile, paths))
    return paths
