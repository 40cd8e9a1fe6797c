"""The 0.1 module paths (posattack.removal, posattack.hooks, ...) still work for one release,
give the new module itself, and warn; configs' registered names never move."""
from __future__ import annotations

import importlib
import sys

import pytest

import posattack
from posattack.deprecated_paths import MOVED_NAMES, OLD_MODULE_PATHS


def _forget(old: str) -> None:
    """Undo an earlier import of `old`, so that importing it again runs the finder."""
    sys.modules.pop(old, None)
    parent, _, child = old.rpartition('.')
    if parent in sys.modules:
        sys.modules[parent].__dict__.pop(child, None)


@pytest.mark.parametrize('old', sorted(OLD_MODULE_PATHS))
def test_old_module_path_imports_the_new_module_and_warns(old):
    _forget(old)
    new = importlib.import_module(OLD_MODULE_PATHS[old])
    with pytest.warns(DeprecationWarning, match=OLD_MODULE_PATHS[old].replace('.', r'\.')):
        module = importlib.import_module(old)
    assert module is new  # one object: monkeypatching either path patches both


def test_old_from_import_of_a_name_still_works():
    _forget('posattack.removal')
    with pytest.warns(DeprecationWarning, match='posattack.channels'):
        from posattack.removal import select_channels  # noqa: F401  (the 0.1 spelling)
    assert select_channels is posattack.channels.select_channels


def test_old_module_as_attribute_of_the_package_warns():
    _forget('posattack.metrics')
    with pytest.warns(DeprecationWarning, match='posattack.evaluation.metric'):
        metric_module = posattack.metrics
    assert metric_module.RegionIoUMetric is posattack.RegionIoUMetric
    with pytest.raises(AttributeError):
        posattack.no_such_module  # noqa: B018


@pytest.mark.parametrize('package,name', sorted(MOVED_NAMES))
def test_names_that_left_a_package_still_resolve_with_a_warning(package, name):
    module = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=MOVED_NAMES[(package, name)].replace('.', r'\.')):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(MOVED_NAMES[(package, name)]), name)


def test_old_dotted_config_type_builds_with_a_warning_and_top_level_names_do_not_warn():
    import warnings

    from mmengine.registry import init_default_scope
    from mmseg.registry import HOOKS, METRICS
    init_default_scope('mmseg')
    with warnings.catch_warnings():
        warnings.simplefilter('error', DeprecationWarning)
        hook = HOOKS.build(dict(type='posattack.ChannelRemovalHook', mode='random',
                                num_channels=3))
        metric = METRICS.build(dict(type='posattack.RegionIoUMetric'))
    assert isinstance(hook, posattack.ChannelRemovalHook)
    assert isinstance(metric, posattack.RegionIoUMetric)
    _forget('posattack.hooks')
    with pytest.warns(DeprecationWarning, match='posattack.channels.hook'):
        old = HOOKS.build(dict(type='posattack.hooks.ChannelRemovalHook', mode='random',
                               num_channels=3))
    assert type(old) is posattack.ChannelRemovalHook


def test_config_fragments_use_top_level_names():
    import os.path as osp

    from mmengine.config import Config
    root = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', '_base_',
                    'posattack')
    types = [Config.fromfile(osp.join(root, 'channel_removal.py')).custom_hooks[0]['type'],
             Config.fromfile(osp.join(root, 'region_metric.py')).region_metric['type'],
             Config.fromfile(osp.join(root, 'aug_shift.py')).aug_shift_model['type'],
             Config.fromfile(osp.join(root, 'aug_shift.py')).aug_shift_pair['type']]
    for name in types:
        assert name.count('.') == 1 and name.startswith('posattack.'), name
        assert hasattr(posattack, name.split('.')[1]), name
