"""A finished run's numbers and pictures, sent to an MMEngine visualizer's backends.

The scalars are read off results.json / profile.json (nothing is recomputed), so what
TensorBoard or W&B shows is what the report says:

* attack, per region R (results.json ``regions``), step = N channels removed:
  ``mIoU/clean/R`` (logged at every N of the run, a flat reference line),
  ``mIoU/targeted[-ORDER]/R`` (ORDER: the ranking order, when it is not ``overall``) and
  ``mIoU/random_mean/R`` (the mean over that N's random draws);
* each test of results.json ``tests``: ``tests/KIND[-ORDER]/R/estimate`` and ``.../p_value``;
* images: the report's plots and the overlay panels (``overlay_<image>``), one image each;
* profile, step = the layer's depth: ``profile/gini_horizontal``, ``profile/gini_vertical``,
  and per fraction F ``profile/targeted_drop@F``, ``profile/random_drop@F``,
  ``profile/gap@F`` (targeted minus the random draws' mean), plus its three figures.

    log_attack(visualizer, results, images)      # images: {name: png path}
"""
from __future__ import annotations

import os.path as osp
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Optional

__all__ = ['attack_scalars', 'log_attack', 'log_images', 'log_profile', 'overlay_images',
           'profile_scalars']

Series = dict[str, list[tuple[int, float]]]  # tag -> [(step, value)], steps ascending


def _metric_key(region: str) -> str:
    return 'mIoU' if region == 'full' else f'{region}.mIoU'


def _series_name(mode: str, attack_region: Optional[str]) -> str:
    return mode if attack_region in (None, 'overall') else f'{mode}-{attack_region}'


def attack_scalars(results: Mapping, prefix: str = '') -> Series:
    """Every scalar series of one attack's results (see the module docstring)."""
    series: Series = defaultdict(list)
    settings = results.get('settings', [])
    counts = sorted({int(s['num_channels']) for s in settings if s['mode'] != 'clean'})
    randoms: dict[tuple[int, str], list[float]] = defaultdict(list)
    for setting in settings:
        for region in results['regions']:
            value = setting['metrics'].get(_metric_key(region))
            if value is None:
                continue
            if setting['mode'] == 'clean':
                for n in counts or [0]:
                    series[f'{prefix}mIoU/clean/{region}'].append((n, float(value)))
            elif setting['mode'] == 'random':
                randoms[(int(setting['num_channels']), region)].append(float(value))
            else:
                name = _series_name(setting['mode'], setting.get('attack_region'))
                series[f'{prefix}mIoU/{name}/{region}'].append(
                    (int(setting['num_channels']), float(value)))
    for (n, region), values in randoms.items():
        series[f'{prefix}mIoU/random_mean/{region}'].append((n, sum(values) / len(values)))
    for test in results.get('tests') or []:
        tag = (f'{prefix}tests/{_series_name(test["kind"], test.get("attack_region"))}/'
               f'{test["eval_region"]}')
        for field in ('estimate', 'p_value'):
            if test.get(field) is not None:
                series[f'{tag}/{field}'].append((int(test['num_channels']), float(test[field])))
    return {tag: sorted(points) for tag, points in series.items()}


def profile_scalars(profile: Mapping) -> Series:
    """Every scalar series of a depth profile (see the module docstring)."""
    series: Series = defaultdict(list)
    for layer in profile.get('layers', []):
        depth = int(layer['depth'])
        for axis in ('horizontal', 'vertical'):
            gini = (layer.get('concentration') or {}).get(axis, {}).get('gini')
            if gini is not None:
                series[f'profile/gini_{axis}'].append((depth, float(gini)))
        for row in layer.get('attack') or []:
            fraction = f'{row["fraction"]:g}'
            for name, key in (('targeted_drop', 'targeted_drop'), ('random_drop', 'random_drop'),
                              ('gap', 'targeted_vs_random_draws')):
                estimate = (row.get(key) or {}).get('estimate')
                if estimate is not None:
                    series[f'profile/{name}@{fraction}'].append((depth, float(estimate)))
    return {tag: sorted(points) for tag, points in series.items()}


def _log_series(visualizer, series: Series) -> None:
    for tag, points in series.items():
        for step, value in points:
            visualizer.add_scalar(tag, value, step=step)


def log_images(visualizer, images: Mapping[str, Optional[str]]) -> None:
    """Each existing PNG of ``images`` ({name: path}) as one RGB image. Names become file
    names in LocalVisBackend (``vis_image/<name>_0.png``): no '/' in them."""
    import mmcv
    for name, path in images.items():
        if path and osp.isfile(path):
            visualizer.add_image(name.replace('/', '_'), mmcv.imread(path, channel_order='rgb'),
                                 step=0)


def log_attack(visualizer, results: Mapping, images: Mapping[str, Optional[str]],
               prefix: str = '') -> None:
    """The attack's scalars and ``images`` (plots, overlays) to every backend."""
    _log_series(visualizer, attack_scalars(results, prefix))
    log_images(visualizer, {f'{prefix}{name}': path for name, path in images.items()})


def log_profile(visualizer, profile: Mapping, figures: Mapping[str, Optional[str]]) -> None:
    """The profile's per-layer scalars and its figures to every backend."""
    _log_series(visualizer, profile_scalars(profile))
    log_images(visualizer, figures)


def overlay_images(paths: Sequence[str], prefix: str = 'overlay_') -> dict[str, str]:
    """{name: path} for overlay panels, named after their files."""
    return {f'{prefix}{osp.splitext(osp.basename(p))[0]}': p for p in paths}
