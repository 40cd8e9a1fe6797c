"""Table 1 of Islam et al. (ICCV 2021): GAPNet vs PermuteNet, per padding, trained by MMEngine.

Each row of the table is one MMEngine Runner run (train, then test) of a probe config
(configs/probes/) with the network, padding, task and grid size set by
:func:`configure_probe`. Results go to a JSON file after every run (atomically), so an
interrupted table resumes where it stopped; the Markdown table puts the paper's figures beside
ours.

Usage::

    results = run_table('configs/probes/gapnet_r18-w16_grid3-location_synthetic.py',
                        'work_dirs/probe_table', data_root='data/synthetic_cityscapes',
                        paddings=['zero'])
    print(format_table1(results))
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from mmengine.config import Config
from mmengine.logging import print_log

from ..utils.fileio import write_text_atomic
from .grid_data import TASKS, check_grid_size, patch_folder_classes
from .padding import PADDING_MODES, normalize_padding_mode

__all__ = [
    'NETWORKS',
    'PAPER_TABLE1',
    'config_fingerprint',
    'configure_probe',
    'format_runs',
    'format_table1',
    'load_results',
    'network_label',
    'row_key',
    'run_probe',
    'run_table',
    'set_schedule_length',
]

NETWORKS = ('GAPNet', 'PermuteNet')
GRID_SIZES = (3, 5, 7)

# Islam et al., ICCV 2021, Table 1 (ResNet-18, CIFAR-10 patches of 32x32): accuracy in %.
PAPER_TABLE1: dict[tuple[str, str], dict[str, dict[int, float]]] = {
    ('zero', 'GAPNet'): {'location': {3: 100, 5: 100, 7: 100},
                         'classification': {3: 82.6, 5: 82.4, 7: 82.1}},
    ('zero', 'PermuteNet'): {'location': {3: 78.8, 5: 37.8, 7: 21.4},
                             'classification': {3: 73.6, 5: 72.2, 7: 69.9}},
    ('reflect', 'GAPNet'): {'location': {3: 100, 5: 100, 7: 100},
                            'classification': {3: 83.8, 5: 83.4, 7: 82.9}},
    ('reflect', 'PermuteNet'): {'location': {3: 78.3, 5: 36.3, 7: 23.2},
                                'classification': {3: 71.1, 5: 71.4, 7: 65.7}},
    ('replicate', 'GAPNet'): {'location': {3: 100, 5: 100, 7: 100},
                              'classification': {3: 83.1, 5: 82.9, 7: 82.8}},
    ('replicate', 'PermuteNet'): {'location': {3: 78.3, 5: 40.1, 7: 23.6},
                                  'classification': {3: 72.0, 5: 71.5, 7: 71.4}},
}

_NETWORK_ONLY_KEYS = {
    'GAPNet': ('head_kernel_size', ),
    'PermuteNet': ('shuffle_channels', 'permutation'),
}


def network_label(model: dict) -> str:
    """A model config's network name with the variant it runs, e.g. ``'GAPNet (3x3 head)'``.

    Plain ``'GAPNet'`` / ``'PermuteNet'`` for the defaults (1x1 head; one permutation per image).
    """
    network = model['type']
    kernel = int(model.get('head_kernel_size', 1)) if network == 'GAPNet' else 1
    if kernel != 1:
        return f'{network} ({kernel}x{kernel} head)'
    if network == 'PermuteNet' and not model.get('shuffle_channels', True):
        return f'{network} (no shuffle)'
    if network == 'PermuteNet' and model.get('permutation', 'image') == 'batch':
        return f'{network} (per-batch permutation)'
    return network


def row_key(padding: str, network: str, task: str, grid_size: int) -> str:
    """The name of one table cell's run, e.g. ``'zero/GAPNet/location/3x3'``."""
    return f'{padding}/{network}/{task}/{grid_size}x{grid_size}'


def _check_choice(value: str, choices: Iterable[str], what: str) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(
            f'Unknown {what} {value!r}; choose one of {", ".join(map(repr, choices))}.')
    return value


def _datasets(cfg: Config) -> list[dict]:
    found = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader and loader.get('dataset'):
            found.append(loader['dataset'])
    if not found:
        raise ValueError('The probe config has no train_dataloader/test_dataloader dataset.')
    return found


def _num_classes(cfg: Config, task: str, grid_size: int) -> int:
    if task == 'location':
        return grid_size * grid_size
    datasets = _datasets(cfg)
    folders = [d.get('patch_dir') for d in datasets if d.get('patch_dir')]
    if folders:
        class_sets = {tuple(patch_folder_classes(folder)) for folder in folders}
        if len(class_sets) != 1:
            raise ValueError(f'The patch folders {folders} have different class sub-folders '
                             f'({sorted(class_sets)}); train and test need the same classes.')
        classes = class_sets.pop()
        if len(classes) < 2:
            raise ValueError(f'Classification needs at least 2 class sub-folders in {folders[0]}, '
                             f'found {list(classes)}.')
        return len(classes)
    classes = datasets[0].get('classes')
    return len(classes) if classes else 19  # Cityscapes train ids


def configure_probe(cfg: Union[str, Config], network: str, task: str, grid_size: int, padding: str,
                    data_root: Optional[str] = None, work_dir: Optional[str] = None,
                    max_iters: Optional[int] = None, seed: Optional[int] = None,
                    head_kernel_size: Optional[int] = None,
                    permutation: Optional[str] = None) -> Config:
    """A copy of a probe config set to one cell of Table 1.

    Sets the model type (``GAPNet``/``PermuteNet``), its padding and class count, the grid
    size and task of every dataset (classification on Cityscapes crops uses the config's
    ``classification_classes``), optionally the Cityscapes ``data_root``, the schedule length
    and the seed. ``head_kernel_size`` (GAPNet's class convolution; the authors' is 3) and
    ``permutation`` (PermuteNet: ``'image'`` or the authors' ``'batch'``) apply to their own
    network only, so one call pattern serves both networks.

    Usage::

        cfg = configure_probe('configs/probes/gapnet_r18-w16_grid3-location_synthetic.py',
                              'PermuteNet', 'location', 5, 'reflect', max_iters=200)
    """
    cfg = copy.deepcopy(cfg) if isinstance(cfg, Config) else Config.fromfile(os.fspath(cfg))
    network = _check_choice(network, NETWORKS, 'network')
    task = _check_choice(task, TASKS, 'task')
    grid_size = check_grid_size(grid_size)
    padding = normalize_padding_mode(padding)
    for other, keys in _NETWORK_ONLY_KEYS.items():
        if other != network:
            for key in keys:
                cfg.model.pop(key, None)
    cfg.model.type = network
    cfg.model.padding = padding
    if head_kernel_size is not None and network == 'GAPNet':
        cfg.model.head_kernel_size = int(head_kernel_size)
    if permutation is not None and network == 'PermuteNet':
        cfg.model.permutation = str(permutation)
    for dataset in _datasets(cfg):
        dataset.grid_size = grid_size
        dataset.task = task
        if data_root is not None:
            if dataset.get('patch_dir'):
                raise ValueError('data_root sets Cityscapes-layout data, but this config reads '
                                 'patches from patch_dir; edit the config instead.')
            dataset.cityscapes_root = str(data_root)
        if dataset.get('cityscapes_root'):
            dataset.classes = (list(cfg.get('classification_classes') or []) or None
                               if task == 'classification' else None)
    cfg.model.num_classes = _num_classes(cfg, task, grid_size)
    if max_iters is not None:
        set_schedule_length(cfg, int(max_iters))
    if seed is not None:
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=int(seed))
    key = row_key(padding, network, task, grid_size)
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{key.replace("/", "_")}_{time.time_ns()}'  # unique per Runner
    return cfg


def set_schedule_length(cfg: Config, max_iters: int) -> None:
    """Train ``max_iters`` iterations: loop, warm-up/decay schedulers and checkpoint follow."""
    if max_iters < 2:
        raise ValueError(f'max_iters must be at least 2, got {max_iters}.')
    cfg.train_cfg.max_iters = max_iters
    warmup = min(20, max_iters // 5)
    schedulers = cfg.get('param_scheduler') or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else schedulers
    for scheduler in schedulers:
        if scheduler.get('type') in ('LinearLR', 'ConstantLR') and scheduler.get('begin', 0) == 0:
            scheduler.end = max(1, warmup)
        else:
            scheduler.begin = max(1, warmup) if scheduler.get('begin', 0) > 0 else 0
            scheduler.end = max_iters
            if 'T_max' in scheduler:
                scheduler.T_max = max_iters - scheduler.begin
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint:
        checkpoint.interval = max_iters


def run_probe(cfg: Config) -> dict[str, Any]:
    """Train and test one probe config with MMEngine's Runner; returns the test metrics.

    Usage::

        metrics = run_probe(configure_probe(config, 'GAPNet', 'location', 3, 'zero'))
        metrics['probe/accuracy']
    """
    from mmengine.runner import Runner

    if cfg.get('work_dir') is None:
        raise ValueError('Set cfg.work_dir: the Runner writes logs and checkpoints there.')
    runner = Runner.from_cfg(cfg)
    runner.train()
    return dict(runner.test())


def config_fingerprint(cfg: Config) -> str:
    """SHA-256 of a run's settings (its config, less work dir and run name): what resume "
    "compares."""
    settings = cfg.to_dict()
    for key in ('work_dir', 'experiment_name'):
        settings.pop(key, None)
    text = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def _data_marker(data_root: Optional[str]) -> Optional[dict]:
    """What generated a synthetic data root (counts, size, seed), so new data means new runs."""
    from ..data.synthetic import MARKER_FILE
    marker = Path(data_root) / MARKER_FILE if data_root else None
    if marker is None or not marker.is_file():
        return None
    with open(marker, encoding='utf-8') as handle:
        return json.load(handle)


def load_results(path: Union[str, os.PathLike]) -> dict[str, dict]:
    """The rows already in a results JSON (``{}`` when the file does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, encoding='utf-8') as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or not isinstance(data.get('rows'), dict):
        raise ValueError(f'{path} is not a probe results file (no "rows" object); move it away '
                         f'or pick another work dir.')
    return data['rows']


def _save_results(path: Path, rows: dict[str, dict], meta: dict) -> None:
    write_text_atomic(path, json.dumps({'meta': meta, 'rows': rows}, indent=2) + '\n')


def run_table(config: Union[str, Config], work_dir: Union[str, os.PathLike],
              paddings: Sequence[str] = ('zero', ), networks: Sequence[str] = NETWORKS,
              grid_sizes: Sequence[int] = GRID_SIZES, tasks: Sequence[str] = TASKS,
              data_root: Optional[str] = None, max_iters: Optional[int] = None,
              seed: Optional[int] = None, resume: bool = True,
              cfg_options: Optional[dict] = None, head_kernel_size: Optional[int] = None,
              permutation: Optional[str] = None) -> dict[str, dict]:
    """Train and test every (padding, network, task, grid) run; returns the rows by key.

    ``head_kernel_size`` and ``permutation`` pick the GAPNet and PermuteNet variants (see
    :func:`configure_probe`); each row records its ``network_label``, e.g.
    ``'PermuteNet (per-batch permutation)'``. Keep each variant in its own ``work_dir``.

    After every run ``work_dir/results.json`` and ``work_dir/table.md`` are rewritten
    atomically. With ``resume`` a run already in results.json with the same settings (the
    configured config's fingerprint, data root, options) is skipped.
    """
    work_dir = Path(work_dir)
    results_path = work_dir / 'results.json'
    rows = load_results(results_path) if resume else {}
    base = copy.deepcopy(config) if isinstance(config, Config) else Config.fromfile(
        os.fspath(config))
    if cfg_options:
        base.merge_from_dict(dict(cfg_options))
    paddings = [normalize_padding_mode(p) for p in paddings]
    meta = {
        'config': str(getattr(base, 'filename', '') or ''), 'data_root': data_root,
        'max_iters': max_iters or base.train_cfg.get('max_iters'), 'cfg_options': cfg_options or {}
    }
    for padding in paddings:
        for network in networks:
            for task in tasks:
                for grid_size in grid_sizes:
                    key = row_key(padding, network, task, grid_size)
                    cfg = configure_probe(base,
                                          network,
                                          task,
                                          grid_size,
                                          padding,
                                          data_root=data_root,
                                          work_dir=str(work_dir / key.replace('/', '_')),
                                          max_iters=max_iters,
                                          seed=seed,
                                          head_kernel_size=head_kernel_size,
                                          permutation=permutation)
                    settings = {'max_iters': cfg.train_cfg.max_iters,
                                'seed': (cfg.get('randomness') or {}).get('seed'),
                                'data_root': data_root, 'cfg_options': cfg_options or {},
                                'config_sha256': config_fingerprint(cfg),
                                'data_marker': _data_marker(data_root)}
                    if key in rows and rows[key].get('settings') == settings:
                        print_log(f'{key}: already done ({rows[key]["accuracy"]:.1f} %), skipped',
                                  logger='current')
                        continue
                    load = os.getloadavg()[0]
                    start = time.perf_counter()
                    metrics = run_probe(cfg)
                    rows[key] = {'accuracy': float(metrics['probe/accuracy']),
                                 'mean_class_accuracy': float(metrics['probe/mean_class_accuracy']),
                                 'num_test_samples': int(metrics['probe/num_samples']),
                                 'num_classes': int(cfg.model.num_classes),
                                 'network_label': network_label(cfg.model),
                                 'seconds': round(time.perf_counter() - start, 1),
                                 'finished_utc': _utc_minute(),
                                 'load_average_at_start': round(load, 2), 'settings': settings}
                    print_log(
                        f'{key}: {rows[key]["accuracy"]:.1f} % in {rows[key]["seconds"]:.0f} s',
                        logger='current')
                    _save_results(results_path, rows, meta)
                    write_text_atomic(work_dir / 'table.md', format_table1(rows) + '\n')
    return rows


def _utc_minute() -> str:
    """The current UTC time to the minute, e.g. ``'2026-12-03 07:40'`` (when a run finished)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M')


def _cell(rows: dict, padding: str, network: str, task: str, grid_size: int) -> str:
    row = rows.get(row_key(padding, network, task, grid_size))
    paper = PAPER_TABLE1.get((padding, network), {}).get(task, {}).get(grid_size)
    ours = f'{row["accuracy"]:.1f}' if row else '–'
    return f'{ours} ({paper:g})' if paper is not None else ours


def _label(rows: dict, padding: str, network: str) -> str:
    """The network's label as its rows recorded it (rows of one work dir share a variant)."""
    labels = {row.get('network_label', network) for key, row in rows.items()
              if key.split('/')[:2] == [padding, network]}
    return ' / '.join(sorted(labels)) or network


def format_table1(rows: dict[str, dict], paddings: Optional[Sequence[str]] = None,
                  networks: Sequence[str] = NETWORKS,
                  grid_sizes: Sequence[int] = GRID_SIZES) -> str:
    """Markdown shaped like the paper's Table 1: ours, with the paper's figure in brackets.

    Usage::

        print(format_table1(load_results('work_dirs/probe_table/results.json')))
    """
    if paddings is None:
        present = {key.split('/')[0] for key in rows}
        paddings = [p for p in PADDING_MODES if p in present] or ['zero']
    grids = [f'{g}x{g}' for g in grid_sizes]
    header = (['padding', 'network'] + [f'location {g}' for g in grids]
              + [f'image cls {g}' for g in grids])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for padding in paddings:
        for network in networks:
            cells = [_cell(rows, padding, network, task, g) for task in TASKS for g in grid_sizes]
            label = _label(rows, padding, network)
            lines.append('| ' + ' | '.join([padding, label] + cells) + ' |')
    seconds = [row['seconds'] for row in rows.values() if 'seconds' in row]
    lines.append('')
    lines.append('Accuracy in % on held-out patches: ours (paper, Islam et al. ICCV 2021 Table 1). '
                 f'{len(seconds)} runs, {sum(seconds) / 60:.1f} min of training and testing.')
    return '\n'.join(lines)


def format_runs(parts: Sequence[tuple[str, dict[str, dict]]],
                grid_sizes: Sequence[int] = GRID_SIZES) -> str:
    """Markdown with one line per (setting, padding, network) of several tables' rows.

    ``parts`` pairs a setting's name with its rows (one work dir's ``results.json``); the
    columns are those of :func:`format_table1` (ours, the paper's figure in brackets), after
    the setting, the training iterations and the padding. Networks and paddings without rows
    are left out.

    Usage::

        print(format_runs([('small', load_results('a/results.json')),
                           ('full width', load_results('b/results.json'))]))
    """
    grids = [f'{g}x{g}' for g in grid_sizes]
    header = (['setting', 'iterations', 'padding', 'network'] + [f'location {g}' for g in grids]
              + [f'image cls {g}' for g in grids])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for setting, rows in parts:
        for padding in PADDING_MODES:
            for network in NETWORKS:
                mine = {key: row for key, row in rows.items()
                        if key.split('/')[:2] == [padding, network]}
                if not mine:
                    continue
                iterations = sorted({str(row.get('settings', {}).get('max_iters', '?'))
                                     for row in mine.values()})
                cells = [_cell(rows, padding, network, task, g)
                         for task in TASKS for g in grid_sizes]
                lines.append('| ' + ' | '.join([setting, ' / '.join(iterations), padding,
                                                _label(rows, padding, network)] + cells) + ' |')
    return '\n'.join(lines)
