"""The Python entry for notebooks: one call runs what the ``posattack`` command runs.

    from posattack.api import attack
    result = attack('posattack::demo/deeplabv3_r18-tiny_synthetic-cityscapes.py', 'iter_600.pth',
                    work_dir='work_dirs/nb', max_images=20, vis_backends=['tensorboard'])
    result.claims[0]['verdict'], result.miou('clean'), result.plots['miou_vs_channels']

:func:`attack` and :func:`depth_profile` take the options of ``posattack attack`` and
``posattack profile`` as keywords (the fields of AttackOptions / ProfileOptions), run the
same code as the command and return the work dir's results as an object. (Not
``posattack.attack(...)``: ``posattack.attack`` is the subpackage that holds the attack.)
"""
from __future__ import annotations

from .attack_run import AttackResult, attack
from .profile_run import ProfileResult, depth_profile

__all__ = ['AttackResult', 'ProfileResult', 'attack', 'depth_profile']
