"""One attack run as the sweep sees it: the model split, the data, the results dict and where
it is written. experiment.py builds it once; each sweep pass reports back through
:meth:`AttackRun.record_pass` (the settings it finished join ``results``, their per-image
counts are saved first, then results.json), so the sweep never holds the experiment's dict.

    run = AttackRun(opts, split, dataloader, num_total, results, work_dir, checkpoint_sha)
    state = run_sweep(..., on_pass_done=run.record_pass)
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Any, Optional

from mmengine import dist

from ..channels.ranking import ChannelRanking
from ..evaluation.metric import summarize_confusion
from ..report.per_image import PerImageCounts, per_image_path
from ..utils.fileio import write_json_atomic
from .feature_split import FeatureSplit
from .resume_files import run_sha256
from .run_fingerprint import ranking_provenance

__all__ = ['AttackRun']


@dataclass
class AttackRun:
    opts: Any                      # AttackOptions, checked (posattack.attack.option_checks)
    split: FeatureSplit
    dataloader: Any
    num_total: int
    results: dict
    checkpoint_sha: str
    ranking: Optional[ChannelRanking] = None          # given or identified before the pass
    previous_per_image: Optional[PerImageCounts] = None

    @property
    def results_path(self) -> str:
        return osp.join(self.opts.work_dir, 'results.json')

    @property
    def ranking_path(self) -> str:
        return osp.join(self.opts.work_dir, 'ranking.json')

    def ranking_info(self) -> dict:
        """What a ranking identified in this run records about the model it ranks."""
        return dict(config=osp.basename(self.opts.config),
                    checkpoint_sha256=self.checkpoint_sha,
                    num_classes=len(self.results['class_names']),
                    identified_on=ranking_provenance(self.results['fingerprint']))

    def record_pass(self, state, finished) -> None:
        """A sweep pass is done: its settings join the results; counts, then results.json."""
        rank = dist.get_rank()
        # Identified in this run: replace any ranking.json an earlier run left in the work
        # dir, or a later --resume would pair these results with that stale ranking.
        if state.ranking is not None and self.ranking is None and rank == 0:
            state.ranking.save(self.ranking_path)
        for setting in finished:
            flat, per_class = summarize_confusion(state.confusions[setting.key],
                                                  self.results['regions'],
                                                  self.results['class_names'])
            self.results['settings'].append(dict(
                setting.to_dict(), key=setting.key, metrics=flat, per_class=per_class))
        if rank == 0:  # counts first: a setting in results.json always has its counts
            # state.per_image holds every pass of this run; the earlier run's settings add on
            state.per_image.merged(self.previous_per_image).save(
                per_image_path(self.opts.work_dir),
                run_sha256=run_sha256(self.results['fingerprint']))
            write_json_atomic(self.results_path, self.results)
