"""Every option of the attack that needs no model, checked in one step before anything runs
(no work dir claimed, no model built):

    checked = check_attack_options(opts)
    checked.opts.regions     # the user's regions, with 'full' first when they lacked it
    checked.region_names     # validate_region_specs of them, computed here once
    checked.design           # the test design (draws, exceedances, identification images)
    checked.attack_regions   # the ranking orders to attack, duplicates dropped, in order

What needs the model or the data (the layer, the ranking against the tensor, the images)
is checked once those exist, in posattack.attack.checks.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Union

from ..channels.ablations import ablation_names
from ..evaluation.regions import validate_region_specs
from ..report.test_design import TestDesign
from .checks import check_design, check_segmentor_config
from .run_bounds import check_bootstrap, check_seeds

__all__ = ['CheckedOptions', 'attack_region_list', 'check_attack_options']


class CheckedOptions(NamedTuple):
    opts: Any
    region_names: list[str]
    design: TestDesign
    attack_regions: list[str]


def attack_region_list(attack_region: Union[str, Sequence[str]]) -> list[str]:
    regions = [attack_region] if isinstance(attack_region, str) else list(attack_region)
    if not regions:
        raise ValueError('--attack-region needs at least one ranking order, e.g. overall.')
    return list(dict.fromkeys(regions))


def check_attack_options(opts) -> CheckedOptions:
    """``opts`` (AttackOptions) checked; a bad one raises with its one-line fix."""
    check_seeds(opts.seeds)
    specs = [opts.regions] if isinstance(opts.regions, (str, dict)) else list(opts.regions)
    names = validate_region_specs(specs)
    if 'full' not in names:
        # As RegionIoUMetric does: mIoU/aAcc/mAcc are the full image's, and reports plot them.
        opts = replace(opts, regions=['full'] + specs)
        names = validate_region_specs(opts.regions)
    if opts.ablation not in ablation_names():
        raise ValueError(f'ablation must be one of {", ".join(map(repr, ablation_names()))}, '
                         f'got {opts.ablation!r}.')
    attack_regions = attack_region_list(opts.attack_region)
    check_bootstrap(opts.bootstrap)
    design = check_design(opts)
    check_segmentor_config(opts.config, opts.cfg_options)  # a probe config: say so
    return CheckedOptions(opts, names, design, attack_regions)
