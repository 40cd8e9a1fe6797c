"""What a depth profile costs against running tools/attack.py once per layer. Ratio, one run.

On the same model, images and settings (fractions, random draws, bootstrap resamples,
regions), times

* profile:  ``posattack.profile.run.run_profile`` over the layers (one identification pass for
            all of them, then one sweep pass per layer with its ranking, prefix replayed for
            layers inside the backbone), reports and plots included;
* attack:   ``posattack.attack.experiment.run_attack`` once per layer, reports and plots
            included, no overlays, on the profile's design: the ranking identified on the
            scored images during the sweep (``--identify-on test``) and the same draws at
            every count (``--max-draws`` = ``--seeds``: no sequential draws at the primary
            count), so both ways do the same work; tools/attack.py's default (held-out
            identification, up to 99 draws) does more, which would flatter the profile;

each in a fresh temporary work dir, in process (model loading counts in both: attack.py
loads the model once per layer, as a user running it per layer would). Rounds alternate
the order, so a noisy, shared machine slows both alike; the best of the rounds is kept per
way and clock. Prints profile/attack for CPU time of this process and wall time; the
issue's target is <= 0.5.

    python tools/analysis_tools/benchmark_profile.py \
        configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py \
        work_dirs/demo/train/iter_600.pth --max-images 20 --threads 1 \
        --cfg-options test_dataloader.dataset.data_root=data/synthetic_cityscapes
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import shutil
import sys
import tempfile
import time

import torch
from mmengine.config import DictAction

from posattack.attack.experiment import DEFAULT_SEEDS, AttackOptions, run_attack
from posattack.profile.run import DEFAULT_FRACTIONS, ProfileOptions, run_profile


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--layers', nargs='+', help='default: the profile\'s depth layers')
    parser.add_argument('--fractions', type=float, nargs='+', default=list(DEFAULT_FRACTIONS))
    parser.add_argument('--seeds', type=int, default=DEFAULT_SEEDS)
    parser.add_argument('--bootstrap', type=int, default=2000)
    parser.add_argument('--max-images', type=int, default=20)
    parser.add_argument('--batch-size', type=int)
    parser.add_argument('--layer-plots', action='store_true',
                        help="the profile also draws attack.py's plots per layer")
    parser.add_argument('--rounds', type=int, default=1, help='alternating rounds; best kept')
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--json', help='also write the measurements here')
    return parser.parse_args(argv)


def _timed(run):
    cpu, wall = time.process_time(), time.perf_counter()
    result = run()
    return result, dict(cpu=time.process_time() - cpu, wall=time.perf_counter() - wall)


def time_profile(args, layers):
    work_dir = tempfile.mkdtemp(prefix='benchmark_profile_')
    try:
        opts = ProfileOptions(config=args.config, checkpoint=args.checkpoint, work_dir=work_dir,
                              layers=layers, fractions=args.fractions, seeds=args.seeds,
                              bootstrap=args.bootstrap, max_images=args.max_images,
                              batch_size=args.batch_size, cfg_options=args.cfg_options,
                              progress=False, layer_plots=args.layer_plots)
        profile, seconds = _timed(lambda: run_profile(opts))
        return [row['layer'] for row in profile['layers']], seconds
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def time_attacks(args, layers):
    root = tempfile.mkdtemp(prefix='benchmark_attack_per_layer_')
    try:
        def run_all():
            for i, layer in enumerate(layers):
                run_attack(AttackOptions(
                    config=args.config, checkpoint=args.checkpoint,
                    work_dir=osp.join(root, str(i)), layer=layer, fractions=args.fractions,
                    seeds=args.seeds, bootstrap=args.bootstrap, max_images=args.max_images,
                    batch_size=args.batch_size, cfg_options=args.cfg_options, show_dir=None,
                    progress=False, identify_on='test', max_draws=args.seeds))
        return _timed(run_all)[1]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    if not MMLogger.check_instance_created('posattack'):
        MMLogger.get_instance('posattack', log_level='WARNING')
    layers = args.layers
    best = {}
    for round_index in range(args.rounds):
        order = ('profile', 'attack') if round_index % 2 == 0 else ('attack', 'profile')
        for way in order:
            if way == 'profile':
                layers, seconds = time_profile(args, layers)
            else:
                seconds = time_attacks(args, layers)
            previous = best.setdefault(way, dict(seconds))
            for clock in seconds:
                previous[clock] = min(previous[clock], seconds[clock])
            print(f'round {round_index + 1}: {way}: {seconds["cpu"]:.1f} s CPU, '
                  f'{seconds["wall"]:.1f} s wall', flush=True)
    ratios = {clock: best['profile'][clock] / best['attack'][clock] for clock in ('cpu', 'wall')}
    print(f'\nlayers: {" ".join(layers)}; {args.max_images} images; fractions '
          f'{" ".join(f"{f:g}" for f in args.fractions)}; {args.seeds} draws; '
          f'{args.bootstrap} resamples; {args.threads} thread(s); best of {args.rounds}; '
          f'per-layer plots in the profile: {"yes" if args.layer_plots else "no"}')
    print('| way | CPU s | wall s |\n|---|---|---|')
    for way in ('profile', 'attack'):
        print(f'| {way} | {best[way]["cpu"]:.1f} | {best[way]["wall"]:.1f} |')
    print(f'| profile / attack per layer | {ratios["cpu"]:.2f} | {ratios["wall"]:.2f} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(layers=layers, best=best, ratios=ratios, args=vars(args)), f,
                      indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
