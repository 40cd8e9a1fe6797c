"""``posattack attack`` as a call, and what it returns: :class:`AttackResult`.

:func:`run_logged_attack` is what the command runs (posattack/cli/attack.py) and
:func:`attack` what a notebook calls: the vis backends checked before any compute, the attack
(pooled over models when given several checkpoints), then its numbers and images logged to
the backends (:mod:`posattack.report.vis_logging`) under ``<work-dir>/<timestamp>/vis_data``.
"""
from __future__ import annotations

import json
import os.path as osp
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Optional, Union

from mmengine import dist

from ..attack.experiment import AttackOptions, run_attack
from ..attack.multi_model import model_names as pooled_model_names
from ..attack.multi_model import run_attacks
from ..models.builder import load_config
from ..report.overlay_manifest import reported_overlays
from ..report.pooling import paper_claims
from ..report.vis_backends import build_run_visualizer, resolve_vis_backends
from ..report.vis_logging import log_attack, overlay_images

__all__ = ['AttackResult', 'attack', 'default_work_dir', 'run_logged_attack']

# report.md's plots (posattack.report.markdown.write_report), by name
PLOT_FILES = ('miou_vs_channels', 'iou_vs_border_distance', 'class_drop_heatmap')


@dataclass(frozen=True)
class AttackResult:
    """A finished attack: results.json as ``results`` (summary.json for a pooled run), the
    paper's claims with their verdicts, and the files the run wrote."""
    work_dir: str
    results: dict
    claims: list = field(default_factory=list)
    plots: dict = field(default_factory=dict)      # name -> PNG path (those written)
    overlays: list = field(default_factory=list)   # overlay panels of this run
    report: Optional[str] = None                   # report.md
    vis_dir: Optional[str] = None                  # where the vis backends wrote

    @property
    def tests(self) -> list:
        """results.json's tests (pooled tests for several models)."""
        return list(self.results.get('tests') or [])

    @property
    def settings(self) -> list:
        return list(self.results.get('settings') or [])

    def miou(self, key: str = 'clean', region: str = 'full') -> float:
        """mIoU of the setting ``key`` (e.g. 'clean', 'targeted/overall/N=6') in ``region``."""
        for setting in self.settings:
            if setting['key'] == key:
                return setting['metrics']['mIoU' if region == 'full' else f'{region}.mIoU']
        raise KeyError(f'no setting {key!r}; this run has '
                       f'{", ".join(s["key"] for s in self.settings[:5])}, ...')


def default_work_dir(config: str, tool: str) -> str:
    """./work_dirs/<config name>/<tool>, the command-line tools' default."""
    name = osp.splitext(osp.basename(config.split('::')[-1]))[0]
    return osp.join('work_dirs', name, tool)


def _read_json(path: str) -> dict:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _single_result(work_dir: str, show_dir: Optional[str], results: Mapping) -> AttackResult:
    """Paths absolute: a notebook may change its folder after the run."""
    work_dir = osp.abspath(work_dir)
    plots = {name: osp.join(work_dir, f'{name}.png') for name in PLOT_FILES}
    return AttackResult(work_dir=work_dir, results=dict(results),
                        claims=paper_claims([('this model', results)]),
                        plots={k: p for k, p in plots.items() if osp.isfile(p)},
                        overlays=[osp.abspath(p) for p in reported_overlays(work_dir, show_dir)],
                        report=osp.join(work_dir, 'report.md'))


def run_logged_attack(opts: AttackOptions, checkpoints: Sequence[str],
                      names: Optional[Sequence[str]] = None,
                      vis_backends: Optional[Sequence[str]] = None) -> AttackResult:
    """The attack on one checkpoint, or pooled over several, logged to the vis backends."""
    if len(checkpoints) == 1 and names:
        raise ValueError('--model-names is for pooled runs (several checkpoints); drop it.')
    cfg = load_config(opts.config, opts.cfg_options)
    backends = resolve_vis_backends(cfg, vis_backends)  # a missing package fails here, first
    if len(checkpoints) > 1:
        summary = run_attacks(opts, checkpoints, names)
        result = AttackResult(work_dir=osp.abspath(opts.work_dir), results=summary,
                              claims=list(summary.get('claims') or []),
                              report=osp.abspath(osp.join(opts.work_dir, 'report.md')))
    else:
        result = _single_result(opts.work_dir, opts.show_dir, run_attack(opts))
    if not backends or dist.get_rank() != 0:  # rank 0 wrote the files; it alone logs them
        return result
    if len(checkpoints) > 1:  # each model's curves under its name
        logged = []
        for name in pooled_model_names(checkpoints, names):
            model_dir = osp.join(opts.work_dir, 'models', name)
            logged.append((f'{name}/', _single_result(
                model_dir, osp.join(model_dir, 'overlays') if opts.show_dir else None,
                _read_json(osp.join(model_dir, 'results.json')))))
    else:
        logged = [('', result)]
    save_dir = osp.abspath(osp.join(opts.work_dir, time.strftime('%Y%m%d_%H%M%S')))
    visualizer = build_run_visualizer(cfg, backends, save_dir, name='posattack_attack')
    try:
        for prefix, one in logged:
            images = dict(one.plots, **overlay_images(one.overlays))
            log_attack(visualizer, one.results, images, prefix=prefix)
    finally:
        visualizer.close()
    return replace(result, vis_dir=osp.join(save_dir, 'vis_data'))


def attack(config: str, checkpoint: Union[str, Sequence[str]], work_dir: Optional[str] = None,
           *, vis_backends: Optional[Sequence[str]] = None,
           model_names: Optional[Sequence[str]] = None, **options) -> AttackResult:
    """Run ``posattack attack CONFIG CHECKPOINT`` from Python; ``options`` are the fields of
    :class:`~posattack.attack.experiment.AttackOptions` (``num_channels=[6, 13]``,
    ``max_images=20``, ``seeds=19``, ``cfg_options={...}``, ``show_dir=None`` for no
    overlays, ...). Several checkpoints pool over models, as on the command line."""
    checkpoints = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    known = {f.name for f in fields(AttackOptions)} - {'config', 'checkpoint', 'work_dir'}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f'attack() got unknown option(s) {", ".join(unknown)}; the options are '
                        f'{", ".join(sorted(known))}.')
    work_dir = work_dir or default_work_dir(config, 'attack')
    options.setdefault('show_dir', osp.join(work_dir, 'overlays'))
    opts = AttackOptions(config=config, checkpoint=checkpoints[0], work_dir=work_dir, **options)
    return run_logged_attack(opts, checkpoints, model_names, vis_backends)
