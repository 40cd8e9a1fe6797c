"""Plots of an attack sweep's results (matplotlib, PNG, written atomically).

Figures are built with ``matplotlib.figure.Figure`` directly, never through pyplot, so no
GUI backend is touched and the process-wide backend stays whatever the user chose; PNGs
are rendered by Agg. Every function takes the ``results`` dict of ``results.json`` (see
posattack/report/markdown.py) and returns the written path, or None when there is nothing to plot
(a note is logged through MMEngine's logger).

Usage::

    plot_miou_vs_channels(results, 'work_dirs/attack/miou_vs_channels.png')
    plot_iou_vs_border_distance(results, 'work_dirs/attack/iou_vs_border_distance.png')
    plot_class_drop_heatmap(results, 'work_dirs/attack/class_drop_heatmap.png')
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mmengine.logging import print_log

from ..channels.modes import CLEAN, RANDOM, TARGETED
from ..utils.fileio import write_bytes_atomic
from .results import aggregate, border_bands, group_miou, present_regions, setting_label

CLEAN_STYLE = dict(color='black', linestyle='--', linewidth=1.2)
RANDOM_COLOR = 'tab:gray'
TARGETED_COLORS = ('tab:red', 'tab:blue', 'tab:green', 'tab:purple', 'tab:orange', 'tab:brown')


def save_figure(fig: Figure, path: str, dpi: int = 120) -> str:
    """Render ``fig`` with Agg into a temporary file beside ``path``, then rename it."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if not extension:
        raise ValueError(f'plot path {path!r} has no extension; use e.g. "{path}.png"')
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    FigureCanvasAgg(fig)  # attach an Agg canvas: no pyplot, no GUI
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format=extension[1:])
    return write_bytes_atomic(path, buffer.getvalue())


def _groups_by_mode(results):
    groups = list(aggregate(results).values())
    clean = next((g for g in groups if g['mode'] == CLEAN), None)
    targeted: dict[str, list[dict]] = {}
    for g in groups:
        if g['mode'] == TARGETED:
            targeted.setdefault(g['attack_region'] or 'overall', []).append(g)
    randoms = [g for g in groups if g['mode'] == RANDOM]
    return clean, targeted, randoms


def _seeds_text(counts) -> str:
    """'3 seeds', '1 seed', or '1-3 seeds' when the random settings differ in seed count."""
    counts = sorted(set(counts))
    if not counts:
        return '0 seeds'
    if len(counts) == 1:
        return f'{counts[0]} seed{"s" if counts[0] != 1 else ""}'
    return f'{counts[0]}-{counts[-1]} seeds'


def _curve(groups: Sequence[Mapping[str, Any]], region: str, clean_value: Optional[float]):
    """x, mean, std arrays over N (clean as N=0 when known: removing nothing is clean)."""
    points = [(0, clean_value, 0.0)] if clean_value is not None else []
    for g in sorted(groups, key=lambda g: g['num_channels']):
        stat = group_miou(g, region)
        if stat['mean'] is not None and g['num_channels'] > 0:
            points.append((g['num_channels'], stat['mean'], stat['std'] or 0.0))
    if not points:
        return None
    x, mean, std = (np.asarray(v, dtype=float) for v in zip(*points))
    return x, mean, std


def _ci_band(results: Mapping[str, Any], groups: Sequence[Mapping[str, Any]], region: str,
             clean_value: Optional[float]):
    """x, low, high of the image-bootstrap 95% interval of each group's mIoU (clean at N=0
    as a point), from results['statistics']; None when the results carry no statistics."""
    statistics = results.get('statistics') or {}
    points = [(0, clean_value, clean_value)] if clean_value is not None else []
    for g in sorted(groups, key=lambda g: g['num_channels']):
        if g['mode'] == RANDOM:
            values = statistics.get('random_groups', {}).get(str(g['num_channels']), {})
        else:
            key = f'targeted/{g["attack_region"]}/N={g["num_channels"]}'
            values = statistics.get('settings', {}).get(key, {})
        interval = values.get(region, {}).get('miou', {}).get('ci95')
        if interval is not None:
            points.append((g['num_channels'], interval[0], interval[1]))
    if len(points) < 2:
        return None
    return tuple(np.asarray(v, dtype=float) for v in zip(*points))


def plot_miou_vs_channels(results: Mapping[str, Any], path: str,
                          regions: Sequence[str] = ('full', 'center', 'periphery')
                          ) -> Optional[str]:
    """mIoU against the number of channels removed, one subplot per region.

    Targeted removal is a line per attack region (ranking order), random removal its mean over
    seeds with a ±1 sample-std band (spread of the draws), clean a dashed horizontal line.
    Where the results carry statistics, each curve also gets its image-bootstrap 95%
    interval: a light band for targeted, dotted lines for the random mean. Curves start at
    N=0 with the clean value. Regions missing from the results are skipped with a logged
    note.

    Usage::

        plot_miou_vs_channels(results, 'out/miou_vs_channels.png', regions=('full', 'periphery'))
    """
    available = present_regions(results, regions)
    missing = [r for r in regions if r not in available]
    if missing:
        print_log(f'plot_miou_vs_channels: no mIoU for region(s) {missing} in the results; '
                  f'plotting {available}', logger='current', level=logging.INFO)
    if not available:
        raise ValueError(f'none of the regions {list(regions)} has an mIoU in the results; '
                         f'evaluated regions are {list(results.get("regions", []))}')
    clean, targeted, randoms = _groups_by_mode(results)

    fig = Figure(figsize=(4.2 * len(available), 3.6), layout='constrained')
    axes = fig.subplots(1, len(available), squeeze=False)[0]
    for ax, region in zip(axes, available):
        clean_value = group_miou(clean, region)['mean'] if clean else None
        if clean_value is not None:
            ax.axhline(clean_value, label='clean', **CLEAN_STYLE)
        curve = _curve(randoms, region, clean_value)
        if curve is not None:
            x, mean, std = curve
            ax.plot(x, mean, marker='s', markersize=4, color=RANDOM_COLOR,
                    label='random (mean ± std, '
                          f'{_seeds_text(g["num_settings"] for g in randoms)})')
            ax.fill_between(x, mean - std, mean + std, color=RANDOM_COLOR, alpha=0.25, linewidth=0)
            band = _ci_band(results, randoms, region, clean_value)
            if band is not None:
                ax.plot(band[0], band[1], linestyle=':', color=RANDOM_COLOR, linewidth=1,
                        label='random mean, 95% CI over images')
                ax.plot(band[0], band[2], linestyle=':', color=RANDOM_COLOR, linewidth=1)
        for color, (attack_region, groups) in zip(TARGETED_COLORS * 4, targeted.items()):
            curve = _curve(groups, region, clean_value)
            if curve is not None:
                ax.plot(curve[0], curve[1], marker='o', markersize=4, color=color,
                        label=f'targeted ({attack_region})')
                band = _ci_band(results, groups, region, clean_value)
                if band is not None:
                    ax.fill_between(band[0], band[1], band[2], color=color, alpha=0.15,
                                    linewidth=0,
                                    label=f'targeted ({attack_region}), 95% CI over images')
        ax.set_title(f'{region} region')
        ax.set_xlabel('channels removed (N)')
        ax.set_ylabel('mIoU (%)')
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize='small')
    title = f'mIoU vs channels removed at {results.get("layer", "?")}'
    if results.get('statistics'):
        # Bands of two curves overlap even where their paired difference is clear: say so.
        title += ('\n(bands: each mIoU over resampled images; the paired targeted-minus-random '
                  'interval in report.md is narrower)')
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_iou_vs_border_distance(results: Mapping[str, Any], path: str,
                                num_channels: Optional[int] = None) -> Optional[str]:
    """mIoU per border band (band_0 = outermost) for clean, targeted and random at one N.

    ``num_channels`` defaults to the largest N among attacked settings. Returns None, with a
    logged note, when the results hold no border bands (evaluate with
    ``dict(type='border', bands=4)`` among the regions to get them).

    Usage::

        plot_iou_vs_border_distance(results, 'out/iou_vs_border_distance.png', num_channels=100)
    """
    bands = border_bands(results)
    if not bands:
        print_log('plot_iou_vs_border_distance: the results hold no border bands (band_0, ...); '
                  'skipping this plot. Add dict(type="border", bands=4) to the evaluated regions '
                  'to get it.', logger='current', level=logging.INFO)
        return None
    clean, targeted, randoms = _groups_by_mode(results)
    attacked_ns = sorted({g['num_channels'] for g in randoms}
                         | {g['num_channels'] for gs in targeted.values() for g in gs})
    if num_channels is None and attacked_ns:
        num_channels = attacked_ns[-1]
    elif num_channels is not None and num_channels not in attacked_ns:
        raise ValueError(f'no targeted or random setting removes N={num_channels} channels; '
                         f'the results have N in {attacked_ns}')

    x = np.arange(len(bands))
    fig = Figure(figsize=(max(5.0, 1.2 * len(bands) + 2.5), 3.8), layout='constrained')
    ax = fig.subplots()

    def means(group):
        stats = [group_miou(group, b) for b in bands]
        return (np.array([np.nan if s['mean'] is None else s['mean'] for s in stats]),
                np.array([0.0 if s['std'] is None else s['std'] for s in stats]))

    if clean is not None:
        ax.plot(x, means(clean)[0], marker='o', label='clean', **CLEAN_STYLE)
    for color, (attack_region, groups) in zip(TARGETED_COLORS * 4, targeted.items()):
        for g in groups:
            if g['num_channels'] == num_channels:
                ax.plot(x, means(g)[0], marker='o', color=color,
                        label=f'targeted ({attack_region}) N={num_channels}')
    for g in randoms:
        if g['num_channels'] == num_channels:
            mean, std = means(g)
            ax.errorbar(x, mean, yerr=std, marker='s', capsize=3, color=RANDOM_COLOR,
                        label=f'random N={num_channels} '
                              f'(mean ± std, {_seeds_text([g["num_settings"]])})')
    labels = list(bands)
    labels[0] += '\n(border)'
    if len(labels) > 1:
        labels[-1] += '\n(inner)'
    ax.set_xticks(x, labels)
    ax.set_xlabel('distance to the image border')
    ax.set_ylabel('mIoU (%)')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize='small')
    ax.set_title('mIoU by distance to the image border')
    return save_figure(fig, path)


def class_drop_matrix(results: Mapping[str, Any], region: str = 'full'):
    """Per-class IoU drop (clean - setting): (row labels, class names, matrix with NaN).

    Rows: targeted settings (per attack region, by N), then random settings as the mean over
    seeds of each seed's IoU. NaN where a class's IoU is undefined for clean or the setting.
    """
    clean, targeted, randoms = _groups_by_mode(results)
    if clean is None:
        raise ValueError('the results have no clean setting, so per-class drops (clean - '
                         'attacked) are undefined; include the clean setting in the sweep')
    if region not in clean['per_class']:
        raise ValueError(f'no per-class IoU for region {region!r}; regions with per-class '
                         f'values: {sorted(clean["per_class"])}')
    class_names = list(results['class_names'])

    def ious(group):
        classes = group['per_class'].get(region, {})
        return np.array([np.nan if classes.get(c, {}).get('IoU', {}).get('mean') is None
                         else classes[c]['IoU']['mean'] for c in class_names])

    clean_iou = ious(clean)
    rows = [g for gs in targeted.values() for g in gs] + randoms
    labels = [setting_label(g, with_n=True) for g in rows]
    matrix = np.array([clean_iou - ious(g) for g in rows]).reshape(len(rows), len(class_names))
    return labels, class_names, matrix


def plot_class_drop_heatmap(results: Mapping[str, Any], path: str,
                            region: str = 'full') -> Optional[str]:
    """Heat map of per-class IoU drop (clean - setting) in one region.

    Rows are settings (targeted N..., random N mean over seeds), columns classes; red is a
    drop, blue a gain, grey undefined (class absent). Returns None, with a logged note, when
    the results hold no attacked setting.

    Usage::

        plot_class_drop_heatmap(results, 'out/class_drop_heatmap.png', region='periphery')
    """
    labels, class_names, matrix = class_drop_matrix(results, region)
    if not labels:
        print_log('plot_class_drop_heatmap: no targeted or random setting in the results; '
                  'skipping this plot.', logger='current', level=logging.INFO)
        return None
    finite = matrix[np.isfinite(matrix)]
    limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    size = (max(6.0, 0.5 * len(class_names) + 3.0), max(2.6, 0.4 * len(labels) + 2.0))
    fig = Figure(figsize=size, layout='constrained')
    ax = fig.subplots()
    cmap = matplotlib.colormaps['RdBu_r'].with_extremes(bad='lightgrey')
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-limit, vmax=limit,
                      aspect='auto', interpolation='nearest')
    if matrix.size <= 600:  # numbers stay readable on small grids only
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f'{value:.1f}', ha='center', va='center', fontsize=6,
                        color='white' if abs(value) > 0.6 * limit else 'black')
    ax.set_xticks(np.arange(len(class_names)), class_names, rotation=60, ha='right')
    ax.set_yticks(np.arange(len(labels)), labels)
    fig.colorbar(image, ax=ax, label='IoU drop (clean - setting, points)')
    ax.set_title(f'Per-class IoU drop, {region} region')
    return save_figure(fig, path)


__all__ = ['class_drop_matrix', 'plot_class_drop_heatmap', 'plot_iou_vs_border_distance',
           'plot_miou_vs_channels', 'save_figure']
