"""Channel-wise position probes (Islam et al., ICCV 2021, Table 1) with MMEngine's Runner.

    # Table 1: GAPNet vs PermuteNet, location 3x3/5x5/7x7 and image classification, per padding
    python tools/probe.py table --work-dir work_dirs/probe_table --paddings zero
    # the authors' variants: GAPNet with a 3x3 class convolution, one permutation per batch
    python tools/probe.py table --work-dir work_dirs/probe_protocol --paddings zero \
        --gapnet-head-kernel 3 --permutation batch
    # one probe config: train, then test
    python tools/probe.py train configs/probes/gapnet_r18-w16_grid3-location_synthetic.py
    # a trained segmentor: frozen backbone, GAPNet / PermuteNet read-outs, per-cell ranking
    python tools/probe.py frozen CONFIG CHECKPOINT --data-root data/synthetic_cityscapes \
        --grid-size 3 --out work_dirs/probe/probe_ranking.json
    python tools/attack.py CONFIG CHECKPOINT --ranking work_dirs/probe/probe_ranking.json \
        --attack-region cell_0_0

``table`` writes WORK_DIR/results.json (one entry per run, rewritten atomically after each, so
an interrupted table resumes) and WORK_DIR/table.md (ours beside the paper's figures). Without
--data-root it makes synthetic Cityscapes scenes in WORK_DIR/data first.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time

from mmengine.config import Config, DictAction

DEFAULT_CONFIG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'probes',
                          'gapnet_r18-w16_grid3-location_synthetic.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    commands = parser.add_subparsers(dest='command', required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--num-threads', type=int,
                        help='torch CPU threads (default: torch\'s choice); on a shared machine '
                        '1 is often fastest')

    table = commands.add_parser('table', parents=[common],
                                help="train and test every cell of the paper's Table 1")
    table.add_argument('--config', default=DEFAULT_CONFIG, help='probe config (configs/probes/)')
    table.add_argument('--work-dir', default='work_dirs/probe_table')
    table.add_argument('--data-root', help='Cityscapes-layout data (default: synthetic scenes '
                       'generated into WORK_DIR/data/synthetic_cityscapes)')
    table.add_argument('--num-train-scenes', type=int, default=40,
                       help='synthetic train scenes to generate (when no --data-root)')
    table.add_argument('--num-val-scenes', type=int, default=20)
    table.add_argument('--paddings', nargs='+', default=['zero', 'reflect', 'replicate'],
                       choices=['zero', 'reflect', 'replicate'])
    table.add_argument('--networks', nargs='+', default=['GAPNet', 'PermuteNet'],
                       choices=['GAPNet', 'PermuteNet'])
    table.add_argument('--grid-sizes', nargs='+', type=int, default=[3, 5, 7])
    table.add_argument('--tasks', nargs='+', default=['location', 'classification'],
                       choices=['location', 'classification'])
    table.add_argument('--max-iters', type=int, help='training iterations per run '
                       '(default: the config\'s)')
    table.add_argument('--seed', type=int, help='random seed (default: the config\'s)')
    table.add_argument('--gapnet-head-kernel', type=int,
                       help="GAPNet's class convolution kernel (default: the config's, 1; the "
                       "authors' GAPNet uses 3)")
    table.add_argument('--permutation', choices=['image', 'batch'],
                       help="PermuteNet: one permutation per image (default) or one per batch "
                       "(the authors' code)")
    table.add_argument('--no-resume', action='store_true',
                       help='rerun rows already in WORK_DIR/results.json')
    table.add_argument('--cfg-options', nargs='+', action=DictAction,
                       help='override settings of the probe config')

    train = commands.add_parser('train', parents=[common], help='train and test one probe config')
    train.add_argument('config')
    train.add_argument('--work-dir', help='default: work_dirs/<config name>')
    train.add_argument('--max-iters', type=int, help='training iterations (the schedule follows)')
    train.add_argument('--cfg-options', nargs='+', action=DictAction)

    frozen = commands.add_parser('frozen', parents=[common],
                                 help='probe a trained segmentor with a frozen backbone')
    frozen.add_argument('config', help='MMSeg config of the segmentor')
    frozen.add_argument('checkpoint', help='its checkpoint')
    source = frozen.add_mutually_exclusive_group(required=True)
    source.add_argument('--data-root', help='Cityscapes-layout data: crops of train / val scenes')
    source.add_argument('--patch-dir', help='folder of training patch images')
    frozen.add_argument('--test-patch-dir', help='folder of test patch images (with --patch-dir)')
    frozen.add_argument('--layer', help="tensor to probe (default: the decode head's input)")
    frozen.add_argument('--grid-size', type=int, default=3)
    frozen.add_argument('--patch-size', type=int, default=32)
    frozen.add_argument('--cell-size', type=int, help='default: the patch size')
    frozen.add_argument('--crop-stride', type=int, help='Cityscapes crops every N pixels')
    frozen.add_argument('--max-patches', type=int, default=2000, help='patches per split')
    frozen.add_argument('--placements', type=int, default=1, help='cells per patch')
    frozen.add_argument('--steps', type=int, default=400, help='read-out training steps')
    frozen.add_argument('--batch-size', type=int, default=64)
    frozen.add_argument('--seed', type=int, default=0)
    frozen.add_argument('--out', default='work_dirs/probe/probe_ranking.json',
                        help='ranking JSON; a summary goes beside it (*_summary.json)')
    frozen.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda if any)")
    frozen.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='allow checkpoints outside the safe allowlist (runs code from the file)')
    frozen.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the segmentor config')
    args = parser.parse_args(argv)
    head_kernel = getattr(args, 'gapnet_head_kernel', None)
    if head_kernel is not None and (head_kernel < 1 or head_kernel % 2 == 0):
        parser.error(f'--gapnet-head-kernel must be odd and positive, got {head_kernel}.')
    for name in ('num_threads', 'max_iters', 'num_train_scenes', 'num_val_scenes', 'steps',
                 'patch_size', 'max_patches', 'placements', 'batch_size'):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1, got {value}.')
    grid_sizes = getattr(args, 'grid_sizes', None) or [getattr(args, 'grid_size', 2)]
    if any(g < 2 for g in grid_sizes):
        parser.error(f'grid sizes must be at least 2 (a g x g grid), got {grid_sizes}.')
    if getattr(args, 'patch_dir', None) and not args.test_patch_dir:
        parser.error(
            '--patch-dir needs --test-patch-dir: the read-outs are tested on other patches.')
    return args


def _synthetic_root(work_dir: str, num_train: int, num_val: int) -> str:
    from mmengine.logging import print_log

    from posattack.data.synthetic import MARKER_FILE, generate_cityscapes
    root = osp.join(work_dir, 'data', 'synthetic_cityscapes')
    marker = osp.join(root, MARKER_FILE)
    if osp.isfile(marker):
        with open(marker, encoding='utf-8') as handle:
            made = json.load(handle)
        if (made.get('num_train'), made.get('num_val')) == (num_train, num_val):
            return root
    start = time.perf_counter()
    generate_cityscapes(root, num_train, num_val, size=(128, 256), seed=0)
    print_log(f'Synthetic scenes ({num_train} train, {num_val} val) in {root}, '
              f'{time.perf_counter() - start:.0f} s', logger='current')
    return root


def run_table(args) -> dict:
    from mmengine.logging import print_log

    from posattack.probes.table import format_table1
    from posattack.probes.table import run_table as run_all
    data_root = args.data_root or _synthetic_root(args.work_dir, args.num_train_scenes,
                                                  args.num_val_scenes)
    start, load = time.perf_counter(), os.getloadavg()
    rows = run_all(args.config, args.work_dir, paddings=args.paddings, networks=args.networks,
                   grid_sizes=args.grid_sizes, tasks=args.tasks, data_root=data_root,
                   max_iters=args.max_iters, seed=args.seed, resume=not args.no_resume,
                   cfg_options=args.cfg_options, head_kernel_size=args.gapnet_head_kernel,
                   permutation=args.permutation)
    table = format_table1(rows, paddings=args.paddings, networks=args.networks,
                          grid_sizes=args.grid_sizes)
    print_log(f'\n{table}\n(this call: {(time.perf_counter() - start) / 60:.1f} min; load average '
              f'{load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end, {os.cpu_count()} CPUs)\n'
              f'Written to {osp.join(args.work_dir, "table.md")}', logger='current')
    return rows


def run_train(args) -> dict:
    from mmengine.logging import print_log

    import posattack.probes  # noqa: F401 - registers the probe models, dataset and metric
    from posattack.probes.table import run_probe, set_schedule_length
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'Config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.max_iters:
        set_schedule_length(cfg, args.max_iters)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    metrics = run_probe(cfg)
    print_log(f'Test accuracy: {metrics["probe/accuracy"]:.2f} % on '
              f'{metrics["probe/num_samples"]} samples', logger='current')
    return metrics


def run_frozen(args):
    import torch
    from mmengine.logging import print_log

    from posattack.identify.grid_probe import build_probe_datasets, frozen_grid_probe
    from posattack.models.builder import load_segmentor
    from posattack.utils.fileio import write_text_atomic
    for path, what in ((args.config, 'Config'), (args.checkpoint, 'Checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file not found: {path}')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model, _ = load_segmentor(args.config, args.checkpoint, cfg_options=args.cfg_options,
                              trust_checkpoint=args.trust_checkpoint, device=device)
    options = {key: value for key, value in (('cell_size', args.cell_size),
                                             ('crop_stride', args.crop_stride)) if value}
    train_set, test_set = build_probe_datasets(
        model, data_root=args.data_root, grid_size=args.grid_size, patch_size=args.patch_size,
        patch_dir=args.patch_dir, test_patch_dir=args.test_patch_dir,
        placements_per_patch=args.placements, max_patches=args.max_patches, seed=args.seed,
        **options)
    result = frozen_grid_probe(model, train_set, test_set, layer=args.layer, steps=args.steps,
                               batch_size=args.batch_size, seed=args.seed,
                               model_info={'config': osp.abspath(args.config),
                                           'checkpoint': osp.abspath(args.checkpoint)})
    path = result.ranking.save(args.out)
    summary_path = osp.splitext(args.out)[0] + '_summary.json'
    write_text_atomic(summary_path, json.dumps(result.summary(), indent=2) + '\n')
    print_log(
        f'{args.grid_size}x{args.grid_size} grid probe of {result.layer} '
        f'{result.tensor_shape}: GAPNet read-out {result.gapnet_accuracy:.1f} %, PermuteNet '
        f'read-out {result.permutenet_accuracy:.1f} % (gap {result.accuracy_gap:.1f} points, '
        f'chance {result.chance_accuracy:.1f} %)\nRanking '
        f'({", ".join(result.ranking.regions[:4])}, '
        f'...) written to {osp.abspath(path)}; summary {summary_path}',
        logger='current')
    return result


def run(argv=None):
    """Run a sub-command; returns its result (rows, metrics or FrozenProbeResult), raises on bad "
    "input."""
    args = parse_args(argv)
    if args.num_threads:
        import torch
        torch.set_num_threads(args.num_threads)
    return {'table': run_table, 'train': run_train, 'frozen': run_frozen}[args.command](args)


def main(argv=None) -> int:
    """The command line: exit code 0, or 2 with one line saying what is wrong."""
    from posattack.models.builder import ConfigError
    from posattack.utils.checkpoint import CheckpointError
    try:
        run(argv)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, KeyError,
            IndexError, CheckpointError, ConfigError) as error:
        # Bad input: the message says what is wrong and how to fix it; no traceback needed.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f'probe.py: error: {message}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
