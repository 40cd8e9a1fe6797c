"""readout.md and readout.png of a position read-out run (posattack.readout.run's result).

* the table: per variant, read-out set and target map, SPC and MAE on the held-out natural
  images with their 95% bootstrap interval over images, and SPC on black, white and noise
  (noise with its interval over the noise images; black and white are one image each);
* ``readout.png``: SPC against the layers, one panel per target map and input (natural,
  black), one line per variant, with the intervals as error bars.

Usage::

    write_readout_report('work_dirs/readout', result)     # paths of readout.md, readout.png
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..report.plots import save_figure
from ..report.statistics_markdown import fmt_ci, fmt_num, markdown_table
from ..utils.fileio import write_text_atomic

__all__ = ['READOUT_LEGEND', 'readout_table', 'plot_readout', 'write_readout_report']

READOUT_LEGEND = (
    'Read-out (Islam, Jia & Bruce, ICLR 2020): a 3x3 convolution per layer on the frozen '
    'features, trained to draw the target map; SPC: Spearman correlation of the drawn map with '
    'the target (1: same order of pixels, 0: none; a constant map counts 0), MAE: mean absolute '
    'error, both averaged over images with a 95% bootstrap interval over images. Natural: '
    'held-out images; black, white: one image each (no interval); noise: uniform noise images.')
PLOT_INPUTS = ('natural', 'black')
VARIANT_COLORS = ('tab:blue', 'tab:red', 'tab:green', 'tab:gray', 'tab:purple', 'tab:brown')


def _score(row: Mapping, kind: str, metric: str) -> Mapping:
    return (row['scores'].get(kind) or {}).get(metric) or {}


def _cell(entry: Mapping, interval: bool = True) -> str:
    text = fmt_num(entry.get('estimate'))
    return f'{text} {fmt_ci(entry.get("ci95"), sign=False)}' if interval and entry.get('ci95') \
        else text


def readout_table(result: Mapping[str, Any]) -> list[str]:
    """Markdown rows: variant, layers, target, SPC/MAE natural, SPC black/white/noise."""
    header = ['backbone', 'layers', 'target', 'SPC natural [95% CI]', 'MAE natural [95% CI]',
              'SPC black', 'SPC white', 'SPC noise [95% CI]', 'MAE black']
    rows = []
    for row in result['rows']:
        rows.append([row['variant'], ' + '.join(f'`{layer}`' for layer in row['layers']),
                     row['target'], _cell(_score(row, 'natural', 'spc')),
                     _cell(_score(row, 'natural', 'mae')), _cell(_score(row, 'black', 'spc')),
                     _cell(_score(row, 'white', 'spc')), _cell(_score(row, 'noise', 'spc')),
                     _cell(_score(row, 'black', 'mae'))])
    return markdown_table(header, rows)


def _layer_sets(result: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys('+'.join(row['layers']) for row in result['rows']))


def plot_readout(result: Mapping[str, Any], path: str) -> str:
    """SPC per layer set: a panel per (input, target), a line per variant."""
    sets = _layer_sets(result)
    targets = list(result['targets'])
    variants = list(dict.fromkeys(row['variant'] for row in result['rows']))
    x = np.arange(len(sets))
    shown = []
    for row in result['rows']:
        for kind in PLOT_INPUTS:
            entry = _score(row, kind, 'spc')
            shown += [v for v in [entry.get('estimate')] + list(entry.get('ci95') or [])
                      if v is not None]
    bottom = min([-0.3] + [v - 0.05 for v in shown])   # never clip a negative SPC
    fig = Figure(figsize=(max(8.0, 2.6 * len(targets)), 2.6 * len(PLOT_INPUTS) + 1.0),
                 layout='constrained')
    axes = fig.subplots(len(PLOT_INPUTS), len(targets), sharex=True, sharey=True, squeeze=False)
    for r, kind in enumerate(PLOT_INPUTS):
        for c, target in enumerate(targets):
            ax = axes[r, c]
            for v, variant in enumerate(variants):
                by_set = {'+'.join(row['layers']): _score(row, kind, 'spc')
                          for row in result['rows']
                          if row['variant'] == variant and row['target'] == target}
                est = np.array([np.nan if by_set.get(s, {}).get('estimate') is None
                                else by_set[s]['estimate'] for s in sets])
                low = np.array([est[i] - by_set[s]['ci95'][0] if by_set.get(s, {}).get('ci95')
                                else 0.0 for i, s in enumerate(sets)])
                high = np.array([by_set[s]['ci95'][1] - est[i] if by_set.get(s, {}).get('ci95')
                                 else 0.0 for i, s in enumerate(sets)])
                ax.errorbar(x + 0.06 * (v - (len(variants) - 1) / 2), est, yerr=[low, high],
                            fmt='o-', capsize=2, markersize=4, label=variant,
                            color=VARIANT_COLORS[v % len(VARIANT_COLORS)])
            ax.axhline(0, color='black', linewidth=0.6)
            ax.set_ylim(bottom, 1.05)
            ax.grid(alpha=0.3)
            ax.set_title(f'{target}, {kind} input', fontsize=9)
            if c == 0:
                ax.set_ylabel('SPC')
    for ax in axes[-1]:
        ax.set_xticks(x, [s.replace('+', '+\n') for s in sets], rotation=45, ha='right',
                      fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle('Position read-out: Spearman correlation of the drawn map with the target')
    return save_figure(fig, path)


def readout_markdown(result: Mapping[str, Any], plot: str) -> str:
    size = result['image_size']
    lines = [f'# Position read-out of `{osp.basename(result["config"])}`', '',
             f'Checkpoint `{result["checkpoint"]}`; {result["num_train_images"]} training and '
             f'{result["num_test_images"]} held-out images at {size[0]}x{size[1]} (trained on: '
             f'{", ".join(result["train_inputs"])}); read-out `{result["readout"]}`, '
             f'{result["training"]["epochs"]} epochs, seed {result["training"]["seed"]}; '
             f'{result["bootstrap"]} bootstrap resamples.', '', READOUT_LEGEND, '']
    lines += readout_table(result) + ['', f'![read-out]({osp.basename(plot)})', '']
    return '\n'.join(lines)


def write_readout_report(work_dir: str, result: Mapping[str, Any]) -> dict[str, str]:
    plot = plot_readout(result, osp.join(work_dir, 'readout.png'))
    markdown = write_text_atomic(osp.join(work_dir, 'readout.md'), readout_markdown(result, plot))
    return dict(plot=plot, markdown=markdown)


def spc_summary(rows: Sequence[Mapping], kind: str = 'natural') -> dict[str, Mapping]:
    """Per target, the SPC entry of ``kind`` (rows of one variant and one layer set)."""
    return {row['target']: _score(row, kind, 'spc') for row in rows}
