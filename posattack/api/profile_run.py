"""``posattack profile`` as a call, and what it returns: :class:`ProfileResult`.

:func:`run_logged_profile` is what the command runs (posattack/cli/depth_profile.py),
:func:`depth_profile` what a notebook calls: backends checked first, the depth profile, then
its per-layer scalars and figures logged (:mod:`posattack.report.vis_logging`).
"""
from __future__ import annotations

import os.path as osp
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Optional

from mmengine import dist

from ..models.builder import load_config
from ..profile.run import ProfileOptions, run_profile
from ..report.vis_backends import build_run_visualizer, resolve_vis_backends
from ..report.vis_logging import log_profile
from .attack_run import default_work_dir

__all__ = ['ProfileResult', 'depth_profile', 'run_logged_profile']

# profile.md's figures (posattack.profile.report.write_profile_report)
FIGURE_FILES = ('concentration_vs_depth', 'gap_vs_depth', 'class_drop_by_layer')


@dataclass(frozen=True)
class ProfileResult:
    """A finished depth profile: profile.json as ``profile`` and the files written."""
    work_dir: str
    profile: dict
    figures: dict = field(default_factory=dict)   # name -> PNG path (those written)
    report: Optional[str] = None                  # profile.md
    vis_dir: Optional[str] = None

    @property
    def layers(self) -> list:
        """One row per layer: layer, depth, num_channels, concentration, attack, ..."""
        return list(self.profile.get('layers') or [])


def run_logged_profile(opts: ProfileOptions,
                       vis_backends: Optional[Sequence[str]] = None) -> ProfileResult:
    """The depth profile, logged to the vis backends."""
    cfg = load_config(opts.config, opts.cfg_options)
    backends = resolve_vis_backends(cfg, vis_backends)  # a missing package fails here, first
    profile = run_profile(opts)
    work_dir = osp.abspath(opts.work_dir)  # paths absolute: a notebook may change folder
    figures = {name: osp.join(work_dir, f'{name}.png') for name in FIGURE_FILES}
    figures = {name: path for name, path in figures.items() if osp.isfile(path)}
    vis_dir = None
    if backends and dist.get_rank() == 0:
        save_dir = osp.join(work_dir, time.strftime('%Y%m%d_%H%M%S'))
        visualizer = build_run_visualizer(cfg, backends, save_dir, name='posattack_profile')
        try:
            log_profile(visualizer, profile, figures)
        finally:
            visualizer.close()
        vis_dir = osp.join(save_dir, 'vis_data')
    return ProfileResult(work_dir=work_dir, profile=dict(profile), figures=figures,
                         report=osp.join(work_dir, 'profile.md'), vis_dir=vis_dir)


def depth_profile(config: str, checkpoint: str, work_dir: Optional[str] = None, *,
                  vis_backends: Optional[Sequence[str]] = None, **options) -> ProfileResult:
    """Run ``posattack profile CONFIG CHECKPOINT`` from Python; ``options`` are the fields of
    :class:`~posattack.profile.run.ProfileOptions` (``layers=[...]``, ``fractions=[0.1]``,
    ``max_images=20``, ...)."""
    known = {f.name for f in fields(ProfileOptions)} - {'config', 'checkpoint', 'work_dir'}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f'depth_profile() got unknown option(s) {", ".join(unknown)}; the '
                        f'options are {", ".join(sorted(known))}.')
    opts = ProfileOptions(config=config, checkpoint=checkpoint,
                          work_dir=work_dir or default_work_dir(config, 'profile'), **options)
    return run_logged_profile(opts, vis_backends)
