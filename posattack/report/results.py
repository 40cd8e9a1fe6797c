"""The results of an attack sweep as data: check, group over seeds, summarise, compare.

Everything here is a pure function over the ``results`` dict that the sweep builds
(the schema of ``results.json``)::

    results = {
      'config': str, 'checkpoint': str, 'layer': str, 'num_images': int,
      'num_channels_total': int, 'class_names': [...], 'regions': ['full', 'left', ...],
      'settings': [
        {'mode': 'clean' | 'targeted' | 'random', 'num_channels': int,
         'fraction': float | None, 'seed': int | None, 'attack_region': str | None,
         'metrics': {'mIoU': .., 'aAcc': .., 'mAcc': .., 'center.mIoU': .., ...},
         'per_class': {region: {class_name: {'IoU': float | None, 'Acc': float | None}}}},
        ...]}

Values are percents (0-100) as in mmseg's IoUMetric; ``None`` (or NaN in memory) where a
value is undefined (e.g. a class absent from a region). Statistics over random seeds use
the sample standard deviation (ddof=1); with a single seed the std is undefined (``None``)
and the report says so instead of printing 0. The files a person reads are written by
:mod:`posattack.report.markdown` (report.md) and :mod:`posattack.report.plots`.

Usage::

    results = read_json('work_dirs/attack/results.json')
    groups = aggregate(results)                 # one entry per setting, over seeds
    compare_targeted_random(results, 'full')    # targeted vs the random draws, per N
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from ..channels.modes import CLEAN, RANDOM, SETTING_MODES, TARGETED
from ..utils.fileio import read_json, write_text_atomic  # noqa: F401  read_json: re-exported
from .statistics import compare_with_draws

MODES = SETTING_MODES


# Regions the paper scores, in the order its tables show them.
PAPER_REGIONS = ('full', 'center', 'periphery', 'left', 'right')


CSV_COLUMNS = ('mode', 'num_channels', 'fraction', 'seed', 'attack_region', 'eval_region',
               'class', 'iou', 'acc')


# The CSV row that carries a region's mean over classes uses this in its `class` column.
MEAN_ROW_CLASS = 'mIoU'


_BAND_PATTERN = re.compile(r'band_(\d+)')


GroupKey = tuple[str, int, Optional[str]]


# ----------------------------------------------------------------------------- values
def _as_float(value: Any) -> Optional[float]:
    """A finite float, or None for None/NaN/inf (undefined values)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def validate_results(results: Any) -> None:
    """Raise a ValueError naming the problem when ``results`` does not follow the schema."""
    if not isinstance(results, Mapping):
        raise ValueError(f'results must be the dict the attack sweep writes (results.json), '
                         f'got {type(results).__name__}')
    missing = [k for k in ('settings', 'class_names', 'regions') if k not in results]
    if missing:
        raise ValueError(f'results lacks key(s) {missing}; expected the dict the attack sweep '
                         f'writes (results.json) with config, checkpoint, layer, num_images, '
                         f'num_channels_total, class_names, regions and settings')
    if not isinstance(results['settings'], Sequence) or not results['settings']:
        raise ValueError('results["settings"] must be a non-empty list of settings')
    for i, setting in enumerate(results['settings']):
        if not isinstance(setting, Mapping):
            raise ValueError(f'setting #{i} must be a dict, got {type(setting).__name__}')
        if setting.get('mode') not in MODES:
            raise ValueError(f'setting #{i} has mode {setting.get("mode")!r}; expected one of '
                             f'{list(MODES)}')
        if not isinstance(setting.get('num_channels'), (int, np.integer)) \
                or isinstance(setting.get('num_channels'), bool) or setting['num_channels'] < 0:
            raise ValueError(f'setting #{i} ({setting["mode"]}) needs an integer num_channels '
                             f'>= 0, got {setting.get("num_channels")!r}')
        if not isinstance(setting.get('metrics'), Mapping):
            raise ValueError(f'setting #{i} ({setting["mode"]}, N={setting["num_channels"]}) '
                             f'has no "metrics" dict')


def region_miou(metrics: Mapping[str, Any], region: str) -> Optional[float]:
    """A region's mIoU from a setting's flat metrics (``'full'`` falls back to ``'mIoU'``)."""
    value = metrics.get(f'{region}.mIoU')
    if value is None and region == 'full':
        value = metrics.get('mIoU')
    return _as_float(value)


def summarize_values(values: Sequence[Any]) -> dict[str, Any]:
    """Mean and sample std (ddof=1) of the defined values; std is None below two values.

    Usage::

        summarize_values([60.0, 62.0, 64.0])  # {'mean': 62.0, 'std': 2.0, 'n': 3}
        summarize_values([61.0, None])        # {'mean': 61.0, 'std': None, 'n': 1}
    """
    defined = [v for v in (_as_float(x) for x in values) if v is not None]
    if not defined:
        return {'mean': None, 'std': None, 'n': 0}
    array = np.asarray(defined, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) >= 2 else None
    return {'mean': float(array.mean()), 'std': std, 'n': len(array)}


def group_key(setting: Mapping[str, Any]) -> GroupKey:
    """Settings that only differ by seed share a key: (mode, num_channels, attack_region)."""
    attack_region = setting.get('attack_region') if setting['mode'] == TARGETED else None
    return setting['mode'], int(setting['num_channels']), attack_region


def _group_sort_key(key: GroupKey):
    mode, num_channels, attack_region = key
    # 'overall' first among attack regions: it is the paper's main ranking.
    region_rank = (0, '') if attack_region in (None, 'overall') else (1, attack_region)
    return MODES.index(mode), region_rank, num_channels


def aggregate(results: Mapping[str, Any]) -> dict[GroupKey, dict[str, Any]]:
    """Statistics per (mode, num_channels, attack_region) over seeds, for every metric.

    Random settings that differ only by seed form one group; clean and targeted groups usually
    hold one setting. For every flat metric key and every per-class IoU/Acc the group gets
    ``{'mean', 'std', 'n'}``: mean over the defined (non-None) values and the sample std
    (ddof=1), which is None with fewer than two values. Groups come ordered: clean, targeted
    (overall first), random; by N within each.

    Usage::

        stats = aggregate(results)
        random_100 = stats[('random', 100, None)]
        print(random_100['metrics']['mIoU'])  # {'mean': ..., 'std': ..., 'n': num_seeds}
    """
    validate_results(results)
    members: dict[GroupKey, list[Mapping[str, Any]]] = {}
    for setting in results['settings']:
        members.setdefault(group_key(setting), []).append(setting)

    groups = {}
    for key in sorted(members, key=_group_sort_key):
        settings = members[key]
        metric_names = []
        for setting in settings:
            metric_names += [m for m in setting['metrics'] if m not in metric_names]
        metrics = {name: summarize_values([s['metrics'].get(name) for s in settings])
                   for name in metric_names}
        per_class: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for setting in settings:
            for region, classes in (setting.get('per_class') or {}).items():
                for class_name in classes:
                    per_class.setdefault(region, {}).setdefault(class_name, {})
        for region, classes in per_class.items():
            for class_name in classes:
                entries = [((s.get('per_class') or {}).get(region) or {}).get(class_name) or {}
                           for s in settings]
                classes[class_name] = {
                    field: summarize_values([e.get(field) for e in entries])
                    for field in ('IoU', 'Acc')}
        mode, num_channels, attack_region = key
        groups[key] = {
            'mode': mode, 'num_channels': num_channels, 'attack_region': attack_region,
            'fraction': settings[0].get('fraction'),
            'seeds': [s.get('seed') for s in settings],
            'num_settings': len(settings),
            'metrics': metrics,
            'per_class': per_class,
        }
    return groups


def setting_label(group: Mapping[str, Any], with_n: bool = False) -> str:
    """Short human name of a group: 'clean', 'targeted (overall)', 'random (3 seeds)'."""
    mode = group['mode']
    if mode == CLEAN:
        label = 'clean'
    elif mode == TARGETED:
        label = f'targeted ({group["attack_region"] or "overall"})'
    else:
        count = group['num_settings']
        label = f'random ({count} seed{"s" if count != 1 else ""})'
    if with_n and mode != CLEAN:
        label += f' N={group["num_channels"]}'
    return label


# ----------------------------------------------------------------------------- CSV
def results_to_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows, one per (setting, eval region, class), plus one mean row per region.

    Columns: mode, num_channels, fraction, seed, attack_region, eval_region, class, iou, acc.
    For every setting and evaluated region, the first row has ``class == 'mIoU'`` and carries
    the region's mIoU in ``iou`` and its mAcc in ``acc``; then one row per class name (in
    ``class_names`` order) with that class's IoU and Acc. Undefined values are None. Regions
    follow ``results['regions']`` (regions only found in per_class are appended).

    Usage::

        rows = results_to_rows(results)
        periphery = [r for r in rows if r['eval_region'] == 'periphery' and r['class'] == 'mIoU']
    """
    validate_results(results)
    rows = []
    for setting in results['settings']:
        per_class = setting.get('per_class') or {}
        regions = list(results['regions']) + [r for r in per_class if r not in results['regions']]
        common = {
            'mode': setting['mode'], 'num_channels': int(setting['num_channels']),
            'fraction': _as_float(setting.get('fraction')), 'seed': setting.get('seed'),
            'attack_region': setting.get('attack_region'),
        }
        for region in regions:
            metrics = setting['metrics']
            mean_acc = metrics.get(f'{region}.mAcc',
                                   metrics.get('mAcc') if region == 'full' else None)
            rows.append({**common, 'eval_region': region, 'class': MEAN_ROW_CLASS,
                         'iou': region_miou(metrics, region), 'acc': _as_float(mean_acc)})
            region_classes = per_class.get(region) or {}
            for class_name in results['class_names']:
                entry = region_classes.get(class_name) or {}
                rows.append({**common, 'eval_region': region, 'class': class_name,
                             'iou': _as_float(entry.get('IoU')),
                             'acc': _as_float(entry.get('Acc'))})
    return rows


def write_results_csv(path: str, results: Mapping[str, Any]) -> str:
    """Write :func:`results_to_rows` as CSV (atomic; undefined values as empty cells).

    Usage::

        write_results_csv('work_dirs/attack/results.csv', results)
        # pandas.read_csv(...) then gives one row per (setting, region, class)
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator='\n')
    writer.writeheader()
    for row in results_to_rows(results):
        writer.writerow({k: ('' if v is None else v) for k, v in row.items()})
    return write_text_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------- report
def _fmt(value: Optional[float], digits: int = 2) -> str:
    return 'n/a' if value is None else f'{value:.{digits}f}'


def format_stat(stat: Mapping[str, Any], digits: int = 2) -> str:
    """'61.00' for a single value, '61.00 ± 1.50' for a mean over seeds."""
    if stat['mean'] is None:
        return 'n/a'
    if stat['n'] >= 2:
        return f'{stat["mean"]:.{digits}f} ± {stat["std"]:.{digits}f}'
    return f'{stat["mean"]:.{digits}f}'


def present_regions(results: Mapping[str, Any], candidates: Sequence[str]) -> list[str]:
    """The candidate regions for which at least one setting has an mIoU."""
    return [r for r in candidates
            if any(region_miou(s['metrics'], r) is not None for s in results['settings'])]


def border_bands(results: Mapping[str, Any]) -> list[str]:
    """Border-band region names (band_0 outermost first) present in the results."""
    names = list(results.get('regions') or [])
    for setting in results['settings']:
        names += [k.split('.')[0] for k in setting['metrics'] if k.endswith('.mIoU')]
    bands = {n for n in names if _BAND_PATTERN.fullmatch(n)}
    return sorted(bands, key=lambda n: int(_BAND_PATTERN.fullmatch(n).group(1)))


def clean_group(groups: Mapping[GroupKey, Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    cleans = [g for g in groups.values() if g['mode'] == CLEAN]
    return cleans[0] if cleans else None


def _setting_members(results, group) -> list[Mapping[str, Any]]:
    key = (group['mode'], group['num_channels'], group['attack_region'])
    return [s for s in results['settings'] if group_key(s) == key]


def region_drops(results: Mapping[str, Any], group: Mapping[str, Any],
                 regions: Sequence[str], clean: Optional[Mapping[str, Any]] = None
                 ) -> dict[str, dict[str, Any]]:
    """Drop = clean mIoU - attacked mIoU per region (stats over the group's seeds).

    Also ``'periphery-center'``: periphery drop minus center drop, computed per seed before
    averaging (so its std is the std of that difference), when both regions exist.
    ``clean`` is the clean group of :func:`aggregate` (found in ``results`` when None).
    """
    clean = clean if clean is not None else clean_group(aggregate(results))
    if clean is None:
        raise ValueError('results have no clean setting, so drops (clean - attacked) are '
                         'undefined; run the sweep with the clean setting included')
    members = _setting_members(results, group)
    clean_miou = {r: group_miou(clean, r)['mean'] for r in list(regions) + ['center', 'periphery']}

    def drop(setting, region):
        attacked = region_miou(setting['metrics'], region)
        base = clean_miou.get(region)
        return None if attacked is None or base is None else base - attacked

    drops = {r: summarize_values([drop(s, r) for s in members]) for r in regions}
    differences = []
    for s in members:
        periphery, center = drop(s, 'periphery'), drop(s, 'center')
        differences.append(None if periphery is None or center is None else periphery - center)
    drops['periphery-center'] = summarize_values(differences)
    return drops


def _region_key(group: Mapping[str, Any], region: str) -> str:
    """The flat metric key of a region's mIoU within an aggregated group."""
    if f'{region}.mIoU' in group['metrics'] or region != 'full':
        return f'{region}.mIoU'
    return 'mIoU'


def group_miou(group: Mapping[str, Any], region: str) -> dict[str, Any]:
    """A region's mIoU stats ({'mean', 'std', 'n'}) within one group of :func:`aggregate`."""
    return group['metrics'].get(_region_key(group, region), {'mean': None, 'std': None, 'n': 0})


def compare_targeted_random(results: Mapping[str, Any], region: str = 'full'
                            ) -> list[dict[str, Any]]:
    """Does targeted removal lower mIoU more than random removal of as many channels?

    The random draws as a distribution (:func:`posattack.report.statistics.compare_with_draws`),
    from the settings' (rounded) metrics alone, so it also works on results without per-image
    counts. For every targeted group with a random group of the same N: ``extra_drop``
    (the gap) = random mean mIoU - targeted mIoU (positive: targeted hurts more),
    ``random_std`` (ddof=1), ``num_std`` (z = gap / random std), the 95% t
    ``prediction_interval`` of one more random draw's drop, the empirical ``p_value``
    (None below two draws) and ``beyond_prediction_interval``.
    """
    groups = aggregate(results)
    clean = clean_group(groups)
    clean_miou = group_miou(clean, region)['mean'] if clean is not None else None
    randoms = {g['num_channels']: g for g in groups.values() if g['mode'] == RANDOM}
    comparisons = []
    for group in groups.values():
        if group['mode'] != TARGETED:
            continue
        random = randoms.get(group['num_channels'])
        targeted_miou = group_miou(group, region)['mean']
        entry = {'num_channels': group['num_channels'], 'attack_region': group['attack_region'],
                 'region': region, 'targeted': targeted_miou, 'random_mean': None,
                 'random_std': None, 'num_seeds': 0, 'extra_drop': None, 'num_std': None,
                 'prediction_interval': None, 'p_value': None,
                 'beyond_prediction_interval': None}
        if random is not None:
            stat = group_miou(random, region)
            entry.update(random_mean=stat['mean'], random_std=stat['std'], num_seeds=stat['n'])
            if stat['mean'] is not None and targeted_miou is not None:
                entry['extra_drop'] = stat['mean'] - targeted_miou
            if clean_miou is not None and targeted_miou is not None:
                draws = [clean_miou - region_miou(s['metrics'], region)
                         for s in _setting_members(results, random)
                         if region_miou(s['metrics'], region) is not None]
                compared = compare_with_draws(clean_miou - targeted_miou, draws)
                entry.update(num_std=compared['z'],
                             prediction_interval=compared['prediction_interval'],
                             p_value=compared['p_value'],
                             beyond_prediction_interval=compared['beyond_prediction_interval'])
        comparisons.append(entry)
    return comparisons
