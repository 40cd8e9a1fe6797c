"""``posattack::`` in a config: the configs that ship inside the installed package.

OpenMMLab packages carry their configs in ``<package>/.mim/configs`` (setup.py copies the
clone's configs/ there when it builds a wheel, and links them for a ``setup.py develop``), and
MMEngine resolves ``_base_ = ['mmseg::segformer/...py']`` through that folder. MMEngine only
follows the scopes it lists in ``MODULE2PACKAGE``; :func:`register_config_scope` (run when
posattack is imported) adds ``posattack`` there, so that after ``pip install``::

    _base_ = ['posattack::_base_/posattack/region_metric.py']

works in any config that ``posattack ...`` (or a script that imports posattack before
``Config.fromfile``) reads, from any folder.

:func:`packaged_config` names a shipped config by its path under configs/, for defaults
inside the package (the installed copy, or the clone's configs/ when run from the source).
"""
from __future__ import annotations

import os.path as osp

from mmengine.config.utils import MODULE2PACKAGE

__all__ = ['CONFIG_SCOPE', 'packaged_config', 'packaged_configs_dir', 'register_config_scope']

CONFIG_SCOPE = 'posattack'
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def register_config_scope() -> None:
    """Let MMEngine resolve ``posattack::PATH`` (scope -> pip project name, as for mmseg)."""
    MODULE2PACKAGE.setdefault(CONFIG_SCOPE, 'posattack')


def packaged_configs_dir() -> str:
    """The configs/ this posattack carries: in a clone (an editable install, or PYTHONPATH)
    the clone's own configs/, which a ``.mim`` copy left by a wheel build must not shadow;
    installed, ``.mim/configs``."""
    clone = osp.dirname(_PACKAGE_DIR)
    if osp.isfile(osp.join(clone, 'setup.py')) and osp.isdir(osp.join(clone, 'configs')):
        return osp.join(clone, 'configs')
    return osp.join(_PACKAGE_DIR, '.mim', 'configs')


def packaged_config(relative: str) -> str:
    """The shipped config at ``relative`` (a path under configs/, e.g. 'demo/x.py')."""
    return osp.join(packaged_configs_dir(), relative)
