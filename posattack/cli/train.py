"""Train a segmentor with MMEngine's Runner, like mmseg's own tools/train.py.

    python tools/dataset_converters/make_synthetic_cityscapes.py data/synthetic_cityscapes
    python tools/train.py configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume   # continue the last run
    python tools/train.py CONFIG --work-dir work_dirs/run1 --keep-finished  # reuse if the same

Importing posattack registers its modules and allowlists the globals of MMEngine
checkpoints, so `--resume` (which torch.loads the last checkpoint) works on torch >= 2.6.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

from ..models.builder import config_file_path
from ..training.kept_model import KeptModelMismatch, kept_model
from ..utils.checkpoint import CheckpointError, register_mmengine_loader

# posattack is imported with this module (its package): modules registered, checkpoint
# globals allowlisted, and `posattack::` understood in the config's _base_

NOT_KEPT = 3  # exit status of --keep-finished --no-train when there is nothing to keep
DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class UsageError(Exception):
    """A problem with the command line or the files it names; reported without traceback."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a segmentor (MMEngine Runner)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir',
                        help='where logs and checkpoints go (default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', action='store_true',
                        help='resume from the latest checkpoint in the work dir')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help="load a checkpoint (the config's load_from, or --resume's) that "
                        'needs globals outside the allowlist (runs arbitrary code from the '
                        'file: only for files you trust)')
    parser.add_argument('--keep-finished', action='store_true',
                        help='if the work dir holds this training already (its last '
                        "checkpoint's recorded config, seed and data are this run's), keep it: "
                        'exit at once when finished, resume it when not; refuse one trained '
                        'another way, naming what differs')
    parser.add_argument('--no-train', action='store_true',
                        help='with --keep-finished: only check; exit 3 (training nothing) '
                        'when no finished training of this config is kept')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy, e.g. '
        'train_dataloader.dataset.data_root=DIR train_cfg.max_iters=100')
    return parser.parse_args(argv)


def _dataset_roots(cfg: Config):
    """(dataloader key, data_root) of every dataloader the config defines."""
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if not loader or 'dataset' not in loader:
            continue
        dataset = loader['dataset']
        # ConcatDataset / RepeatDataset wrap their datasets one level down.
        inner = dataset.get('datasets') or [dataset.get('dataset', dataset)]
        for item in inner:
            if item.get('data_root'):
                yield key, item['data_root']


def check_data_roots(cfg: Config) -> None:
    for key, root in _dataset_roots(cfg):
        if not osp.isdir(root):
            raise UsageError(
                f'{key}.dataset.data_root does not exist: {osp.abspath(root)}\n'
                f'Make the synthetic demo data with\n'
                f'  posattack make-synthetic {root}\n'
                f'  (in a clone: python tools/dataset_converters/make_synthetic_cityscapes.py '
                f'{root})\n'
                f'or point the config at your data with --cfg-options '
                f'{key}.dataset.data_root=DIR (and the same for the other dataloaders).')


def build_config(args) -> Config:
    path = config_file_path(args.config)  # 'posattack::demo/...' names a shipped config
    if not osp.isfile(path):
        raise UsageError(f'config file not found: {osp.abspath(path)}\n'
                         'Pass the path of an MMSeg config, e.g. '
                         'posattack::demo/deeplabv3_r18-tiny_synthetic-cityscapes.py')
    cfg = Config.fromfile(path)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir priority, as in mmseg: command line > config file > config name
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.resume = args.resume
    if args.resume and not _has_checkpoint(cfg.work_dir):
        raise UsageError(f'--resume: no checkpoint in {osp.abspath(cfg.work_dir)} to resume '
                         'from; train without --resume first, or pass the --work-dir of an '
                         'earlier run')
    check_data_roots(cfg)
    return cfg


def _has_checkpoint(work_dir: str) -> bool:
    # The Runner records its latest checkpoint in this file (CheckpointHook).
    return osp.isfile(osp.join(work_dir, 'last_checkpoint'))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_train and not args.keep_finished:
        print('error: --no-train only goes with --keep-finished (it checks for a kept '
              'training); add --keep-finished or drop --no-train', file=sys.stderr)
        return 2
    try:
        cfg = build_config(args)
    except UsageError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    if args.keep_finished:
        try:
            kept = kept_model(cfg.work_dir, cfg)
        except KeptModelMismatch as error:
            print(f'error: {error}', file=sys.stderr)
            return 2
        if kept is not None and kept.finished:
            print(f'kept: {kept.checkpoint} (its recorded config, seed {kept.seed} and data are '
                  "this training's, and it finished)")
            return 0
        if args.no_train:
            print(f'not kept: no finished training of this config in {cfg.work_dir} '
                  '(--no-train: nothing trained)')
            return NOT_KEPT
        cfg.resume = kept is not None  # the same training, stopped early: go on from it
    os.makedirs(cfg.work_dir, exist_ok=True)
    if 'runner_type' in cfg:  # a customised runner, as mmseg's tools/train.py allows
        from mmseg.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    # load_from / --resume go through posattack's loader: an unsafe pickle is refused
    # naming its global, in one line, as the attack tools refuse their checkpoint
    register_mmengine_loader(trust_checkpoint=args.trust_checkpoint)
    start = time.perf_counter()
    try:
        runner.train()
    except (CheckpointError, FileNotFoundError) as error:
        if os.environ.get('POSATTACK_DEBUG'):
            raise
        print(f'error: {error}', file=sys.stderr)
        return 2
    print_log(f'training finished in {time.perf_counter() - start:.1f} s; checkpoints in '
              f'{osp.abspath(cfg.work_dir)}', logger='current')
    return 0

