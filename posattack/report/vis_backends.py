"""Where a run's curves and images go: the config's ``visualizer.vis_backends``, as in mmseg.

MMSeg users watch runs in the backends their config names (``LocalVisBackend``,
``TensorboardVisBackend``, ``WandbVisBackend``); the attack and the depth profile log there too.
``--vis-backend`` (or the API's ``vis_backends=``) replaces the config's list by name::

    backends = resolve_vis_backends(cfg, ['tensorboard'])   # checked before any compute
    visualizer = build_run_visualizer(cfg, backends, save_dir)  # None without backends

Building goes through mmseg's VISUALIZERS registry with the config's visualizer type
(``SegLocalVisualizer`` in mmseg's configs; MMEngine's ``Visualizer`` when the config has
none), so every backend MMEngine has, or a user registers, works. A backend whose package
is missing (tensorboard, wandb) is a one-line error that says what to install, raised by
:func:`resolve_vis_backends` before the run starts.
"""
from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any, Optional

__all__ = ['VIS_BACKEND_CHOICES', 'add_vis_backend_argument', 'build_run_visualizer',
           'resolve_vis_backends']

# --vis-backend names -> MMEngine backend types ('none': log nowhere, even if the config names
# backends)
VIS_BACKEND_CHOICES = {'local': 'LocalVisBackend', 'tensorboard': 'TensorboardVisBackend',
                       'wandb': 'WandbVisBackend', 'none': None}
# backend type -> (modules any one of which it imports, what to install)
_NEEDS = {'TensorboardVisBackend': (('tensorboardX', 'tensorboard'),
                                    "pip install tensorboard (or pip install 'posattack[vis]')"),
          'WandbVisBackend': (('wandb', ), "pip install wandb (or pip install 'posattack[vis]')")}


def add_vis_backend_argument(parser) -> None:
    """``--vis-backend NAME ...``; checked by :func:`resolve_vis_backends` (a one-line error
    naming the choices, as for every other bad input, not argparse's usage dump)."""
    parser.add_argument('--vis-backend', nargs='+', metavar='NAME',
                        help='log curves and images to these backends instead of the config\'s '
                        f'visualizer.vis_backends: {", ".join(VIS_BACKEND_CHOICES)} '
                        '(tensorboard: tensorboard --logdir WORK_DIR)')


def _type_name(backend: Any) -> str:
    kind = backend.get('type') if isinstance(backend, dict) else backend
    return kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_vis_backends(cfg, requested: Optional[Sequence[str]] = None) -> list[dict]:
    """The backends to log to: ``requested`` by name if given, else the config's
    ``visualizer.vis_backends``; refused, in one line, if a name is unknown or a backend's
    package is missing."""
    if requested:
        unknown = [name for name in requested if name not in VIS_BACKEND_CHOICES]
        if unknown:
            raise ValueError(f'unknown vis backend {unknown[0]!r}: choose from '
                             f'{", ".join(VIS_BACKEND_CHOICES)}.')
        if 'none' in requested and len(set(requested)) > 1:
            raise ValueError("vis backend 'none' logs nowhere: give it alone.")
        backends = [dict(type=VIS_BACKEND_CHOICES[name]) for name in dict.fromkeys(requested)
                    if VIS_BACKEND_CHOICES[name]]
    else:
        visualizer = cfg.get('visualizer') or {}
        backends = [dict(b) if isinstance(b, dict) else b
                    for b in (visualizer.get('vis_backends') or [])]
    for backend in backends:
        modules, install = _NEEDS.get(_type_name(backend), ((), ''))
        if modules and not any(_installed(m) for m in modules):
            raise RuntimeError(f'vis backend {_type_name(backend)} needs the {modules[-1]} '
                               f'package, which is not installed: {install}.')
    return backends


def build_run_visualizer(cfg, backends: Sequence, save_dir: str, name: str = 'posattack'):
    """A visualizer of the config's type writing to ``backends`` under
    ``<save_dir>/vis_data`` (MMEngine's layout), or None when there are no backends.

    The instance gets a name of its own (MMEngine keeps visualizers by name; a second run in
    one process must not get the first one's backends)."""
    if not backends:
        return None
    from mmseg.registry import VISUALIZERS
    spec = dict(cfg.get('visualizer') or dict(type='Visualizer'))
    spec.update(vis_backends=[dict(b) if isinstance(b, dict) else b for b in backends],
                save_dir=save_dir, name=f'{name}_{time.strftime("%Y%m%d_%H%M%S")}_{id(spec)}')
    return VISUALIZERS.build(spec)
