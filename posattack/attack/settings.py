"""The settings an attack sweep evaluates: clean, targeted top-N, random N per seed."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Optional, Union

from ..channels.modes import CLEAN, RANDOM, TARGETED
from ..channels.ranking import resolve_channel_count


@dataclass(frozen=True)
class AttackSetting:
    """One way of removing channels from the attacked tensor.

    ``mode`` is ``'clean'`` (nothing removed), ``'targeted'`` (the top ``num_channels`` of
    the ranking's ``attack_region`` order) or ``'random'`` (``num_channels`` drawn with
    ``seed``). ``fraction`` records the fraction the count came from, when it did.
    """
    mode: str
    num_channels: int = 0
    fraction: Optional[float] = None
    seed: Optional[int] = None
    attack_region: Optional[str] = None

    @property
    def key(self) -> str:
        """A stable name, used to match finished settings on --resume."""
        if self.mode == CLEAN:
            return 'clean'
        if self.mode == TARGETED:
            return f'targeted/{self.attack_region}/N={self.num_channels}'
        return f'random/N={self.num_channels}/seed={self.seed}'

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        """A short human-readable name for plots and overlays."""
        if self.mode == CLEAN:
            return 'clean'
        if self.mode == TARGETED:
            return f'targeted {self.attack_region} N={self.num_channels}'
        return f'random N={self.num_channels} seed={self.seed}'


def build_settings(num_total: int,
                   num_channels: Optional[Sequence[int]] = None,
                   fractions: Optional[Sequence[float]] = None,
                   num_seeds: int = 5,
                   attack_region: Union[str, Sequence[str]] = 'overall'
                   ) -> list[AttackSetting]:
    """Clean, then targeted (one per ranking order in ``attack_region``) and random
    settings for every channel count.

    Exactly one of ``num_channels`` and ``fractions`` gives the counts. Random settings use
    seeds ``0 .. num_seeds-1``, so a longer run contains every setting of a shorter one.
    """
    attack_regions = [attack_region] if isinstance(attack_region, str) else list(attack_region)
    if (num_channels is None) == (fractions is None):
        raise ValueError('give channel counts either as num_channels or as fractions, '
                         'not both and not neither.')
    if num_seeds < 0:
        raise ValueError(f'num_seeds must be >= 0, got {num_seeds}.')
    if fractions is not None:
        counts = [resolve_channel_count(num_total, fraction=f) for f in fractions]
        fraction_of = dict(zip(counts, fractions))
    else:
        counts = [int(n) for n in num_channels]
        fraction_of = {}
    for count in counts:
        if not 0 < count <= num_total:
            raise ValueError(f'cannot remove {count} channels: the attacked tensor has '
                             f'{num_total}; pass counts in 1..{num_total}.')
    counts = sorted(set(counts))
    settings = [AttackSetting(CLEAN)]
    for count in counts:
        for region in attack_regions:
            settings.append(AttackSetting(TARGETED, count, fraction_of.get(count),
                                          attack_region=region))
        for seed in range(num_seeds):
            settings.append(AttackSetting(RANDOM, count, fraction_of.get(count), seed=seed))
    return settings
