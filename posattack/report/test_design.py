"""The statistical protocol of a run, fixed in code before any data is seen.

One primary test per claim of the paper (Islam et al., ICCV 2021), at the paper's count
(5% of the attacked channels: their ~100 of 2048), ranking order ``overall``:

1. claim 1: the targeted full-image drop ranked among random drops of as many channels;
2. claim 2: the targeted (periphery drop - center drop) ranked among the random draws' own
   (periphery drop - center drop): a difference in differences, so that the periphery's
   larger drop under *any* removal is not counted as position information.

Both are sequential rank tests (:mod:`posattack.report.rank_tests`) with the exceedance target
and draw cap below. Every other count, region and order is exploratory: fixed draws
(``--seeds``), Holm-adjusted p-values. Verdict words come from these rank tests only; the
image bootstrap gives the intervals of effect sizes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Optional

from ..channels.modes import TARGETED
from ..channels.ranking import resolve_channel_count
from .rank_tests import ALPHA, DEFAULT_EXCEEDANCES, DEFAULT_MAX_DRAWS

PRIMARY_FRACTION = 0.05
PRIMARY_ORDER = 'overall'


@dataclass(frozen=True)
class TestDesign:
    """How verdicts are reached: the primary count, the sequential rule, the level."""
    primary_fraction: float = PRIMARY_FRACTION
    exceedances: Optional[int] = DEFAULT_EXCEEDANCES
    max_draws: int = DEFAULT_MAX_DRAWS
    alpha: float = ALPHA

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Optional[Mapping]) -> 'TestDesign':
        if not data:
            return cls()
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def primary_num_channels(self, num_total: int) -> int:
        return resolve_channel_count(num_total, fraction=self.primary_fraction)


def primary_setting(settings: Sequence[Mapping], num_total: int,
                    design: TestDesign) -> tuple[Optional[int], Optional[str]]:
    """(N, order) of the primary tests, or (None, None) when the run has no targeted setting
    at the primary count (then every test is exploratory, and reports say so)."""
    n = design.primary_num_channels(num_total)
    orders = [s['attack_region'] for s in settings
              if s['mode'] == TARGETED and int(s['num_channels']) == n]
    if not orders:
        return None, None
    return n, PRIMARY_ORDER if PRIMARY_ORDER in orders else orders[0]
