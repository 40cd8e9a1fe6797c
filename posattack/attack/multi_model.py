"""The attack over several trained models of one config (e.g. training seeds), then pooled.

    run_attacks(AttackOptions(config, checkpoint=None, work_dir='work_dirs/pooled'),
                ['seed0/iter_600.pth', 'seed1/iter_600.pth', 'seed2/iter_600.pth'])

Each model gets the single-model experiment (:func:`posattack.attack.experiment.run_attack`) in
``<work_dir>/models/<name>/``, resumable as ever; the top level gets ``summary.json`` and
``report.md`` (:mod:`posattack.report.pooling`). Every checkpoint is checked against the config
before any image is read: a checkpoint of another architecture or class count is refused
by name, so a pooled run never mixes models that do not share the question.
"""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Optional

from mmengine import dist
from mmengine.logging import print_log

from ..models.builder import extract_state_dict, load_segmentor, load_state_dict_checked
from ..report.pooling import SUMMARY_FORMAT, build_summary
from ..report.statistics_markdown import summary_markdown
from ..utils.checkpoint import load_checkpoint
from ..utils.fileio import file_sha256, write_json_atomic, write_text_atomic
from ..utils.owned_files import claimed_folder
from .experiment import AttackOptions, run_attack
from .work_dir import claim_work_dir, clear_earlier_outputs

# What a pooled run writes at the top of its work dir (each model has a work dir of its own).
POOLED_OUTPUTS = ('summary.json', 'report.md')
POOLED_LEGACY_MARK = (('summary.json', (SUMMARY_FORMAT, )), )


def model_names(checkpoints: Sequence[str], names: Optional[Sequence[str]] = None) -> list[str]:
    """Folder names for the models: given, else the file stems, else parent folder + stem.

    Training runs usually differ by folder (``seed1/iter_600.pth``), not by file name.
    """
    if names is not None:
        if len(names) != len(checkpoints):
            raise ValueError(f'--model-names gives {len(names)} names for {len(checkpoints)} '
                             'checkpoints; give one name per checkpoint.')
        chosen = list(names)
    else:
        stems = [osp.splitext(osp.basename(c))[0] for c in checkpoints]
        parents = [osp.basename(osp.dirname(osp.abspath(c))) for c in checkpoints]
        if len(set(stems)) == len(stems):
            chosen = stems
        elif len(set(zip(parents, stems))) == len(stems):
            chosen = [f'{p}_{s}' for p, s in zip(parents, stems)]
        else:
            chosen = [f'model_{i}' for i in range(len(checkpoints))]
    bad = [n for n in chosen if not n or '/' in n or n in ('.', '..')]
    if bad or len(set(chosen)) != len(chosen):
        raise ValueError(f'model names must be distinct folder names, got {chosen}; '
                         'pass --model-names with one plain name per checkpoint.')
    return chosen


def check_checkpoints(config: str, checkpoints: Sequence[str], cfg_options=None,
                      trust_checkpoint: bool = False) -> None:
    """Every checkpoint loads into the config's model, and all name the same classes."""
    # By content, not path: a symlink or a byte copy under another name is the same model,
    # and counting it twice would inflate the degrees of freedom of the pooled tests.
    first_of: dict[str, str] = {}
    model, _ = load_segmentor(config, None, cfg_options=cfg_options)
    classes_of: dict[str, Optional[tuple[str, ...]]] = {}
    for path in checkpoints:
        loaded = load_checkpoint(path, map_location='cpu', trust_checkpoint=trust_checkpoint)
        digest = file_sha256(path)
        if digest in first_of:
            raise ValueError(f'the same checkpoint is given twice ({first_of[digest]} and '
                             f'{path} have the same contents, sha256 {digest[:12]}...): '
                             'pooled models must be distinct training runs.')
        first_of[digest] = path
        # Raises CheckpointMismatchError naming this file and the first differing keys.
        load_state_dict_checked(model, extract_state_dict(loaded, path), path)
        meta = loaded.get('meta') if isinstance(loaded, Mapping) else None
        dataset_meta = meta.get('dataset_meta') if isinstance(meta, Mapping) else None
        classes = dataset_meta.get('classes') if isinstance(dataset_meta, Mapping) else None
        classes_of[path] = tuple(classes) if classes is not None else None
    named = {p: c for p, c in classes_of.items() if c is not None}
    if len(set(named.values())) > 1:
        first, *others = named.items()
        other = next((p, c) for p, c in others if c != first[1])
        raise ValueError(f'checkpoints of different datasets in one pooled run: {first[0]} has '
                         f'{len(first[1])} classes ({", ".join(first[1][:3])}, ...), {other[0]} '
                         f'has {len(other[1])} ({", ".join(other[1][:3])}, ...); pool only '
                         'models trained on the same classes.')


def run_attacks(opts: AttackOptions, checkpoints: Sequence[str],
                names: Optional[Sequence[str]] = None) -> dict:
    """Attack every model, then write summary.json and report.md into ``opts.work_dir``."""
    if len(checkpoints) < 2:
        raise ValueError('a pooled run needs two or more checkpoints; with one, call '
                         'run_attack.')
    names = model_names(checkpoints, names)
    # The top level is locked and claimed like a single run's work dir: two pooled runs into
    # one folder would each write a summary, the last one orphaning the other's models.
    with claim_work_dir(opts.work_dir, None, outputs=POOLED_OUTPUTS,
                        legacy=POOLED_LEGACY_MARK, resume=opts.resume):
        check_checkpoints(opts.config, checkpoints, opts.cfg_options, opts.trust_checkpoint)
        if dist.get_rank() == 0:
            if not opts.resume:
                clear_earlier_outputs(opts.work_dir, None)
            # marked as posattack's before models/ appears, so a --resume after a kill
            # finds it ours
            claimed_folder(opts.work_dir).save()
        return _attack_and_pool(opts, checkpoints, names)


def _attack_and_pool(opts: AttackOptions, checkpoints: Sequence[str],
                     names: Sequence[str]) -> dict:
    models: list[tuple[str, Mapping]] = []
    for name, checkpoint in zip(names, checkpoints):
        work_dir = osp.join(opts.work_dir, 'models', name)
        print_log(f'model {name}: {checkpoint} -> {work_dir}', 'current')
        show_dir = osp.join(work_dir, 'overlays') if opts.show_dir else None
        results = run_attack(replace(opts, checkpoint=checkpoint, work_dir=work_dir,
                                     show_dir=show_dir))
        models.append((name, results))
    summary = build_summary(models, opts.config)
    if dist.get_rank() == 0:
        os.makedirs(opts.work_dir, exist_ok=True)
        write_json_atomic(osp.join(opts.work_dir, 'summary.json'), summary)
        links = {name: f'models/{name}/report.md' for name in names}
        write_text_atomic(osp.join(opts.work_dir, 'report.md'), summary_markdown(summary, links))
        for claim in summary['claims']:
            print_log(f'{claim["claim"]}: {claim["verdict"]} ({claim["evidence"]})', 'current')
        print_log(f'pooled report: {osp.join(opts.work_dir, "report.md")}', 'current')
    return summary
