"""posattack's node in MMEngine's registry tree, for configs that ``_base_`` ``posattack::``.

MMEngine marks every typed dict that a config inherits from ``posattack::PATH`` with
``_scope_='posattack'`` and, when building it, imports ``posattack.registry`` and looks for the
registry of scope 'posattack' under the caller's (as it does for ``mmseg::`` and mmseg's
registries). Without one it falls back to the caller's registry: the Runner's
``VISUALIZERS`` (MMEngine's root) then cannot find mmseg's ``SegLocalVisualizer``. So each of
mmseg's registries gets a child here, with scope 'posattack': a type it lacks is found in
mmseg's registry, its parent, the way mmseg's own types are found for mmseg's configs.

posattack's own types are named by their path (``type='posattack.RegionIoUMetric'``). mmseg's
registry strips the scope and asks this child for ``RegionIoUMetric``, or for
``hooks.ChannelRemovalHook`` (a 0.1 path, still imported with a warning): a dotted name is a
path inside posattack, imported as such.
"""
from __future__ import annotations

from mmengine.registry import Registry
from mmengine.utils import get_object_from_string
from mmseg import registry as mmseg_registry

__all__ = ['DATASETS', 'DATA_SAMPLERS', 'EVALUATOR', 'HOOKS', 'INFERENCERS', 'LOG_PROCESSORS',
           'LOOPS', 'METRICS', 'MODELS', 'MODEL_WRAPPERS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
           'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'RUNNERS', 'RUNNER_CONSTRUCTORS',
           'TASK_UTILS', 'TRANSFORMS', 'VISBACKENDS', 'VISUALIZERS', 'WEIGHT_INITIALIZERS']


class _PosattackRegistry(Registry):
    """A child of one of mmseg's registries; a dotted key is a path inside posattack."""

    def get(self, key):
        if isinstance(key, str) and '.' in key and not key.startswith(f'{self.scope}.'):
            found = get_object_from_string(f'{self.scope}.{key}')
            if found is not None:
                return found
        return super().get(key)


def _child(parent: Registry) -> Registry:
    # locations: mmseg's modules (a registry imports only its own locations before a lookup,
    # not its parent's) and posattack's, which register into mmseg's registries
    return _PosattackRegistry(parent.name, parent=parent, scope='posattack',
                              locations=list(parent._locations) + ['posattack'])


RUNNERS = _child(mmseg_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmseg_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmseg_registry.LOOPS)
HOOKS = _child(mmseg_registry.HOOKS)
DATASETS = _child(mmseg_registry.DATASETS)
DATA_SAMPLERS = _child(mmseg_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmseg_registry.TRANSFORMS)
MODELS = _child(mmseg_registry.MODELS)
MODEL_WRAPPERS = _child(mmseg_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmseg_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmseg_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmseg_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmseg_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmseg_registry.PARAM_SCHEDULERS)
METRICS = _child(mmseg_registry.METRICS)
EVALUATOR = _child(mmseg_registry.EVALUATOR)
TASK_UTILS = _child(mmseg_registry.TASK_UTILS)
VISUALIZERS = _child(mmseg_registry.VISUALIZERS)
VISBACKENDS = _child(mmseg_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmseg_registry.LOG_PROCESSORS)
INFERENCERS = _child(mmseg_registry.INFERENCERS)
