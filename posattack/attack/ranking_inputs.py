"""The rankings a run is given: ``--ranking`` (or the work dir's ranking.json on --resume) and
``--compare-ranking``, read in the format their name or ``--ranking-format`` says."""
from __future__ import annotations

import os.path as osp
from typing import Optional

from ..channels.ranking import ChannelRanking


def load_ranking_file(path: str, fmt: str) -> ChannelRanking:
    """A --ranking or --compare-ranking file; 'auto' knows the authors' release by its name
    (or a folder of their files)."""
    if fmt == 'auto':
        fmt = 'authors' if 'positional_encoding_neurons' in osp.basename(
            path.rstrip('/')) or osp.isdir(path) else 'posattack'
    return ChannelRanking.load(path, format=fmt)


def load_ranking(opts, work_ranking: str) -> Optional[ChannelRanking]:
    """AttackOptions' --ranking, else on --resume the ranking.json an earlier run left."""
    if opts.ranking:
        return load_ranking_file(opts.ranking, opts.ranking_format)
    if opts.resume and osp.exists(work_ranking):
        try:
            return ChannelRanking.load(work_ranking)
        except (ValueError, KeyError, TypeError) as error:  # truncated or hand-edited
            raise ValueError(f'--resume: the work dir\'s {error} Delete {work_ranking} to '
                             'identify again (the finished settings stay), or drop --resume '
                             'to start over.') from None
    return None


def load_other_ranking(opts, num_total: int) -> Optional[ChannelRanking]:
    """The ranking to compare with (--compare-ranking), checked before any work."""
    if not opts.compare_ranking:
        return None
    other = load_ranking_file(opts.compare_ranking, opts.compare_ranking_format)
    other.check_compatible(num_total)
    return other
