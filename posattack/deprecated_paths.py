"""Old module paths of the flat layout (0.1), kept working for one release with a warning.

posattack's modules used to sit side by side in one folder (``posattack.removal``,
``posattack.metrics``, ...); they now live in subpackages by idea. A script that still
imports an old path gets the module itself (the same object: monkeypatching and isinstance
keep working) and a DeprecationWarning naming the new path. Configs should use the
top-level registered names (``type='posattack.ChannelRemovalHook'``), which never move.

Four old modules share their name with a new subpackage (``posattack.identify``,
``posattack.profile``, ``posattack.report``, ``posattack.cli``): those subpackages export what
the old modules did, or warn for the names that moved elsewhere (:func:`moved_name`).

Delete this module, its install in ``posattack/__init__.py`` and the ``__getattr__`` hooks that
call :func:`moved_name` in the release after next.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any

__all__ = ['MOVED_NAMES', 'OLD_MODULE_PATHS', 'install', 'moved_name']

#: Old module path -> new module path.
OLD_MODULE_PATHS = {
    'posattack.fileio': 'posattack.utils.fileio',
    'posattack.checkpoint': 'posattack.utils.checkpoint',
    'posattack.distributed': 'posattack.utils.distributed',
    'posattack.machine': 'posattack.utils.machine',
    'posattack.cityscapes_labels': 'posattack.data.cityscapes_labels',
    'posattack.synthetic': 'posattack.data.synthetic',
    'posattack.builder': 'posattack.models.builder',
    'posattack.authors_deeplab_head': 'posattack.models.authors_deeplab_head',
    'posattack.authors_checkpoint': 'posattack.models.authors_checkpoint',
    'posattack.layers': 'posattack.channels.layers',
    'posattack.ranking': 'posattack.channels.ranking',
    'posattack.ranking_comparison': 'posattack.channels.ranking_comparison',
    'posattack.removal': 'posattack.channels',  # split into removal, selection, channel_statistics
    'posattack.hooks': 'posattack.channels.hook',
    'posattack.probes.frozen_probe': 'posattack.identify.grid_probe',
    'posattack.regions': 'posattack.evaluation.regions',
    'posattack.metrics': 'posattack.evaluation.metric',
    'posattack.shift_consistency': 'posattack.evaluation.shift_consistency',
    'posattack.aug_shift': 'posattack.training.aug_shift',
    'posattack.shift_crops': 'posattack.training.shift_crops',
    'posattack.statistics': 'posattack.report.statistics',
    'posattack.significance': 'posattack.report.significance',
    'posattack.per_image': 'posattack.report.per_image',
    'posattack.pooling': 'posattack.report.pooling',
    'posattack.report_statistics': 'posattack.report.statistics_markdown',
    'posattack.plots': 'posattack.report.plots',
    'posattack.overlay': 'posattack.report.overlay',
    'posattack.overlay_manifest': 'posattack.report.overlay_manifest',
    'posattack.aug_shift_report': 'posattack.report.aug_shift_table',
    'posattack.settings': 'posattack.attack.settings',
    'posattack.feature_split': 'posattack.attack.feature_split',
    'posattack.linear_shortcut': 'posattack.attack.linear_shortcut',
    'posattack.prefix_replay': 'posattack.attack.prefix_replay',
    'posattack.sweep': 'posattack.attack.sweep',
    'posattack.experiment': 'posattack.attack.experiment',
    'posattack.attack_checks': 'posattack.attack.checks',
    'posattack.non_finite': 'posattack.models.non_finite',
    'posattack.dataset_errors': 'posattack.data.dataset_errors',
    'posattack.multi_model': 'posattack.attack.multi_model',
    'posattack.run_fingerprint': 'posattack.attack.run_fingerprint',
    'posattack.work_dir': 'posattack.attack.work_dir',
    'posattack.work_dir_lock': 'posattack.utils.work_dir_lock',
    'posattack.depth_layers': 'posattack.profile.depth_layers',
    'posattack.concentration': 'posattack.profile.concentration',
    'posattack.profile_report': 'posattack.profile.report',
}

#: (package, name) -> module that now holds the name, for names a package no longer exports.
MOVED_NAMES = {
    ('posattack.identify', 'build_split_dataloader'): 'posattack.data.dataloader',
    ('posattack.identify', 'forward_to_layer'): 'posattack.channels.forward',
    ('posattack.identify', 'global_average_pool'): 'posattack.channels.forward',
    ('posattack.report', 'write_json_atomic'): 'posattack.utils.fileio',
    ('posattack.report', 'write_text_atomic'): 'posattack.utils.fileio',
    ('posattack.probes', 'FrozenProbeResult'): 'posattack.identify.grid_probe',
    ('posattack.probes', 'frozen_grid_probe'): 'posattack.identify.grid_probe',
    ('posattack.probes', 'grid_probe_ranking'): 'posattack.identify.grid_probe',
    # posattack.cli (0.1: the tools' shared helpers) is now the `posattack` command
    ('posattack.cli', 'BAD_INPUT_ERRORS'): 'posattack.utils.cli',
    ('posattack.cli', 'CfgOptionsAction'): 'posattack.utils.cli',
    ('posattack.cli', 'add_run_arguments'): 'posattack.utils.cli',
    ('posattack.cli', 'parse_region_arg'): 'posattack.utils.cli',
    ('posattack.cli', 'report_bad_input'): 'posattack.utils.cli',
}


def _warn(old: str, new: str) -> None:
    # stacklevel 2 skips importlib's own frames (warnings does that for them), so the warning
    # points at the user's import line.
    warnings.warn(f'{old} is deprecated and will be removed in the next release; use {new}.',
                  DeprecationWarning, stacklevel=3)


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the new module; registered at the front of ``sys.meta_path``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in OLD_MODULE_PATHS:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None  # a placeholder module; exec_module puts the real one in its place

    def exec_module(self, module) -> None:
        new = OLD_MODULE_PATHS[module.__name__]
        _warn(module.__name__, new)
        # The import system returns whatever sys.modules holds under the name after
        # exec_module, so the old name becomes the new module object itself.
        sys.modules[module.__name__] = importlib.import_module(new)


_FINDER = _OldPathFinder()


def install() -> None:
    """Make the old paths importable (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def moved_name(package: str, name: str) -> Any:
    """For a package's ``__getattr__``: an old submodule or a name that moved, with a warning."""
    old_module = f'{package}.{name}'
    if old_module in OLD_MODULE_PATHS:
        return importlib.import_module(old_module)  # warns in exec_module
    new = MOVED_NAMES.get((package, name))
    if new is None:
        raise AttributeError(f'module {package!r} has no attribute {name!r}')
    warnings.warn(f'{package}.{name} is deprecated and will be removed in the next release; '
                  f'use {new}.{name}.', DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(new), name)
