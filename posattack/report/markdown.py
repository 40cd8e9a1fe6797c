"""report.md and everything around it: the Markdown report, the console summary, write_report.

The report reads the ``results`` dict (see :mod:`posattack.report.results` for its schema
and the grouping over seeds) and links the plots of :mod:`posattack.report.plots`.

Usage::

    results = read_json('work_dirs/attack/results.json')
    write_markdown_report('work_dirs/attack/report.md', results)
    print(format_summary_table(results))
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..channels.modes import CLEAN, RANDOM
from ..channels.ranking_comparison import comparison_markdown
from ..utils.fileio import write_json_atomic, write_text_atomic
from .plots import plot_class_drop_heatmap, plot_iou_vs_border_distance, plot_miou_vs_channels
from .results import (PAPER_REGIONS, aggregate, border_bands, clean_group, compare_targeted_random,
                      format_stat, group_miou, present_regions, region_drops, setting_label,
                      validate_results, write_results_csv)
from .statistics_markdown import tests_markdown


def _comparison_sentence(entry: Mapping[str, Any]) -> str:
    who = f'targeted ({entry["attack_region"] or "overall"})'
    head = f'N={entry["num_channels"]}: '
    region = 'full-image' if entry['region'] == 'full' else entry['region']
    if entry['random_mean'] is None:
        return head + f'{who}: no random baseline with N={entry["num_channels"]}; cannot compare.'
    if entry['extra_drop'] is None:
        return head + f'{who}: {region} mIoU undefined for targeted or random; cannot compare.'
    extra = entry['extra_drop']
    amount = f'by {abs(extra):.2f} {"more" if extra >= 0 else "less"} than random'
    seeds = entry['num_seeds']
    sentence = (f'{head}{who} lowers {region} mIoU {amount} '
                f'(mean over {seeds} draw{"s" if seeds != 1 else ""}), ')
    if entry['prediction_interval'] is None:
        return sentence + ('but one random draw is no distribution: no prediction interval and '
                           'no p-value (run more random seeds).')
    low, high = entry['prediction_interval']
    z = 'z undefined (the draws did not vary)' if entry['num_std'] is None \
        else f'z = {entry["num_std"]:.2f}'
    return sentence + (f'{z}; 95% prediction interval of one random draw\'s drop '
                       f'[{low:.2f}, {high:.2f}]: beyond it: '
                       f'{"yes" if entry["beyond_prediction_interval"] else "no"}; empirical '
                       f'p = {entry["p_value"]:.3f} (floor {1 / (1 + seeds):.3f} with {seeds} '
                       'draws).')


def ranking_source_text(source: Optional[Mapping[str, Any]]) -> str:
    """Where the channel ranking came from, said so a reader sees a same-image ranking."""
    if not source:
        return 'not recorded (results from an older posattack)'
    where = f'{source.get("num_images", "?")} {source.get("split", "?")} images'
    if source['kind'] == 'given':
        where = f'given (`{source.get("path")}`), identified on ' + (
            where if source.get('split') else 'images it does not record')
    else:
        where = f'identified on {where}'
    if source.get('on_scored_images') is True:
        return where + ': **ranking selected on the scored images** (every p-value optimistic)'
    if source.get('on_scored_images') is None:
        return where + ': **not shown to be held out** from the scored images'
    return where + ', none of them scored (held out)'


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return lines


def _link_target(path: str, report_path: str) -> str:
    """A link usable from the report: relative to its folder, with forward slashes."""
    relative = os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(report_path)))
    return relative.replace(os.sep, '/')


def build_markdown_report(results: Mapping[str, Any],
                          plots: Optional[Mapping[str, str]] = None,
                          overlays: Optional[Sequence[str]] = None,
                          report_path: str = 'report.md') -> str:
    """The Markdown text of :func:`write_markdown_report` (links relative to report_path)."""
    groups = aggregate(results)
    clean = clean_group(groups)
    random_groups = [g for g in groups.values() if g['mode'] == RANDOM]
    seed_counts = sorted({g['num_settings'] for g in random_groups})
    if len(seed_counts) == 1:
        seeds_text = f' over {seed_counts[0]} seed{"s" if seed_counts[0] != 1 else ""} per N'
    else:  # say which N got how many seeds, since the std rests on them
        seeds_text = ': ' + ', '.join(
            f'{g["num_settings"]} seed{"s" if g["num_settings"] != 1 else ""} '
            f'at N={g["num_channels"]}' for g in random_groups) if random_groups else ''
    lines = ['# Position-channel attack report', '',
             f'- Config: `{results.get("config", "n/a")}`',
             f'- Checkpoint: `{results.get("checkpoint", "n/a")}`',
             f'- Attacked layer: `{results.get("layer", "n/a")}` '
             f'({results.get("num_channels_total", "n/a")} channels)',
             f'- Images evaluated: {results.get("num_images", "n/a")}',
             f'- Ranking: {ranking_source_text(results.get("ranking_source"))}',
             f'- Settings evaluated: {len(results["settings"])} '
             f'({sum(s["mode"] == "clean" for s in results["settings"])} clean, '
             f'{sum(s["mode"] == "targeted" for s in results["settings"])} targeted, '
             f'{sum(s["mode"] == "random" for s in results["settings"])} random'
             + seeds_text + ')',
             '',
             'Values are mIoU in percent. Random rows show mean ± sample std (ddof=1) over '
             'seeds; with one seed only the value is shown, since a std is undefined. '
             'Drop = clean mIoU - attacked mIoU, in mIoU points.', '']

    regions = present_regions(results, PAPER_REGIONS)
    lines += ['## mIoU per region', '']
    if regions:
        rows = [[setting_label(g), str(g['num_channels'])]
                + [format_stat(group_miou(g, r)) for r in regions] for g in groups.values()]
        lines += _markdown_table(['Setting', 'N removed'] + regions, rows)
    else:
        lines.append('No full/center/periphery/left/right region was evaluated.')
    lines.append('')

    bands = border_bands(results)
    if bands:
        lines += ['## mIoU by distance to the image border', '',
                  f'{bands[0]} is the outermost band, {bands[-1]} the innermost.', '']
        rows = [[setting_label(g), str(g['num_channels'])]
                + [format_stat(group_miou(g, b)) for b in bands] for g in groups.values()]
        lines += _markdown_table(['Setting', 'N removed'] + bands, rows) + ['']

    attacked = [g for g in groups.values() if g['mode'] != CLEAN]
    lines += ['## Drop from clean (clean - attacked)', '']
    if clean is None:
        lines.append('No clean setting in the results: drops cannot be computed.')
    elif not attacked:
        lines.append('No targeted or random setting in the results.')
    elif regions:
        has_pc = 'center' in regions and 'periphery' in regions
        header = ['Setting', 'N removed'] + [f'{r} drop' for r in regions]
        if has_pc:
            header.append('periphery drop - center drop')
        rows = []
        for g in attacked:
            drops = region_drops(results, g, regions, clean)
            row = [setting_label(g), str(g['num_channels'])]
            row += [format_stat(drops[r]) for r in regions]
            if has_pc:
                row.append(format_stat(drops['periphery-center']))
            rows.append(row)
        lines += _markdown_table(header, rows)
        if has_pc:
            lines += ['', 'A positive periphery-minus-center value means the attack hurts the '
                      'image periphery more than its center, as the paper reports for position '
                      'channels.']
        else:
            lines += ['', 'Center and periphery were not both evaluated (add the "paper" '
                      'regions), so the periphery-minus-center drop is not shown.']
    lines.append('')

    lines += ['## Targeted vs random removal', '']
    comparisons = compare_targeted_random(results, 'full')
    if comparisons:
        lines += [f'- {_comparison_sentence(c)}' for c in comparisons]
    else:
        lines.append('No targeted setting in the results.')
    lines.append('')
    if comparisons:
        lines += tests_markdown(results)

    comparison = results.get('ranking_comparison')
    if comparison:
        names = comparison.get('names', {})
        lines += ['## Ranking comparison', '',
                  comparison_markdown(comparison, names.get('a', 'A'), names.get('b', 'B')), '']

    if plots:
        lines += ['## Plots', '']
        for title, path in plots.items():
            if path:
                lines += [f'### {title}', '', f'![{title}]({_link_target(path, report_path)})', '']
    if overlays:
        lines += ['## Images that the targeted removal changes the most', '']
        for path in overlays:
            lines += [f'![{os.path.basename(path)}]({_link_target(path, report_path)})', '']
    return '\n'.join(lines).rstrip('\n') + '\n'


def write_markdown_report(path: str, results: Mapping[str, Any],
                          plots: Optional[Mapping[str, str]] = None,
                          overlays: Optional[Sequence[str]] = None) -> str:
    """Write the Markdown report (atomic) and return its path.

    Tables of mIoU per region for clean / targeted / random (mean ± std over seeds) per N,
    the drop from clean with the periphery-minus-center drop, the targeted-vs-random and
    periphery-vs-center tests with their intervals (:mod:`posattack.report.statistics_markdown`),
    and links to plots (``{title: path}``) and overlay panels (paths), made relative to the
    report's folder.

    Usage::

        plots = {'mIoU vs channels removed': 'work_dirs/attack/miou_vs_channels.png'}
        write_markdown_report('work_dirs/attack/report.md', results, plots=plots)
    """
    text = build_markdown_report(results, plots=plots, overlays=overlays, report_path=path)
    return write_text_atomic(path, text)


def format_summary_table(results: Mapping[str, Any]) -> str:
    """A plain-text table (one line per setting group) to print at the end of a sweep.

    Usage::

        print(format_summary_table(results))
        # setting             N  full          center  periphery  P-C drop
    """
    groups = aggregate(results)
    regions = present_regions(results, ('full', 'center', 'periphery'))
    clean = clean_group(groups)
    has_pc = clean is not None and {'center', 'periphery'} <= set(regions)
    header = ['setting', 'N'] + regions + (['P-C drop'] if has_pc else [])
    rows = []
    for g in groups.values():
        row = [setting_label(g), str(g['num_channels'])]
        row += [format_stat(group_miou(g, r)) for r in regions]
        if has_pc:
            row.append('' if g['mode'] == CLEAN
                       else format_stat(
                           region_drops(results, g, regions, clean)['periphery-center']))
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return '  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(['-' * w for w in widths])] + [line(r) for r in rows]
    return '\n'.join(out)


def write_report(out_dir: str, results: Mapping[str, Any],
                 overlays: Optional[Sequence[str]] = None) -> dict[str, Optional[str]]:
    """Everything at once: results.json, results.csv, the plots and report.md in ``out_dir``.

    Returns ``{name: path}`` (a plot's path is None where it was skipped, e.g. no bands).

    Usage::

        paths = write_report('work_dirs/attack', results)
        print(paths['report'])
    """
    validate_results(results)
    paths: dict[str, Optional[str]] = {
        'json': write_json_atomic(os.path.join(out_dir, 'results.json'), results),
        'csv': write_results_csv(os.path.join(out_dir, 'results.csv'), results),
    }
    regions = present_regions(results, ('full', 'center', 'periphery')) or ['full']
    paths['miou_vs_channels'] = plot_miou_vs_channels(
        results, os.path.join(out_dir, 'miou_vs_channels.png'), regions=regions)
    paths['iou_vs_border_distance'] = plot_iou_vs_border_distance(
        results, os.path.join(out_dir, 'iou_vs_border_distance.png'))
    paths['class_drop_heatmap'] = plot_class_drop_heatmap(
        results, os.path.join(out_dir, 'class_drop_heatmap.png'))
    plots = {'mIoU vs channels removed': paths['miou_vs_channels'],
             'IoU vs distance to the border': paths['iou_vs_border_distance'],
             'Per-class IoU drop (full image)': paths['class_drop_heatmap']}
    paths['report'] = write_markdown_report(os.path.join(out_dir, 'report.md'), results,
                                            plots=plots, overlays=overlays)
    return paths
