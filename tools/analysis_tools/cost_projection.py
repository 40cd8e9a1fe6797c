"""Project the paper's experiment (500 Cityscapes val images, the default settings) from the
per-phase figures tools/analysis_tools/benchmark_full_resolution.py measured, with the models'
FLOPs.

A projection, not a measurement: time = build + identification per image x identification
images + (backbone pass per image x passes + one more setting per image x settings) x 500 +
statistics + report + overlays. The per-image figures (CPU seconds of one thread, i.e. wall
time on an idle core) come from the largest image count measured. The settings are those
tools/attack.py runs by default (posattack.attack: fractions 1/5/10/20 %, --seeds draws per
exploratory N, the primary N's first round of sequential draws; a run whose test stays
undecided draws more, up to --max-draws: the projection gives both ends). FLOPs come from
mmengine's FlopAnalyzer on the backbone and on the decode head at 1024x2048 (multiply-adds,
as mmengine counts them), so the work can be carried to another device by its sustained
rate; no GPU figure here is measured.

    python tools/analysis_tools/cost_projection.py   # from work_dirs/tables/full_resolution
    python tools/analysis_tools/cost_projection.py --arch deeplabv3_r50 --no-flops
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys

# The measured results and the architectures: the benchmark beside this file (a script's
# folder is first on sys.path).
from benchmark_full_resolution import DEFAULT_RESULTS
from full_resolution_worker import ARCHITECTURES, PAPER, SIZE

PAPER_IMAGES = 500


def default_settings(num_total: int) -> tuple[int, int]:
    """(settings of a default run, of a run that draws to --max-draws) on ``num_total``
    channels, from the library's own defaults."""
    from posattack.attack.experiment import (DEFAULT_NUM_CHANNELS_FRACTIONS, DEFAULT_SEEDS,
                                             AttackOptions)
    from posattack.attack.sequential_draws import first_round_size, primary_draws
    from posattack.attack.settings import build_settings
    design = AttackOptions(config='', checkpoint='', work_dir='').design
    settings = build_settings(num_total, None, list(DEFAULT_NUM_CHANNELS_FRACTIONS),
                              DEFAULT_SEEDS, ['overall'])
    primary = design.primary_num_channels(num_total)
    first = settings + primary_draws(settings, primary, first_round_size(DEFAULT_SEEDS, design))
    most = settings + primary_draws(settings, primary, design.max_draws)
    return len(first), len(most)


def head_and_backbone_flops(arch: str, size=SIZE) -> dict:
    """Multiply-adds of the backbone (and neck) and of the decode head on one image."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    from posattack.models.builder import load_segmentor
    spec = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model, _ = load_segmentor(osp.join(PAPER, spec['config']), None,
                              cfg_options=dict(spec['options']))
    inputs = torch.zeros(1, 3, *size)
    with torch.no_grad():
        by_module = FlopAnalyzer(model, (inputs, )).unsupported_ops_warnings(False) \
            .uncalled_modules_warnings(False).by_module()
    return dict(backbone=by_module.get('backbone', 0) + by_module.get('neck', 0),
                head=by_module.get('decode_head', 0))


def kept_flops(results: str, arch: str, size) -> dict:
    """The FLOP count of ``arch`` at ``size``, kept in ``results`` (a traced forward at
    1024x2048 takes minutes on a CPU; the count never changes)."""
    # slide inference runs the same network: counted once over the whole image (its
    # overlapping windows cover 1.5x the pixels of a 1024x2048 image with the zoo's stride)
    arch = arch.replace('_slide', '_whole')
    path = osp.join(results, f'flops_{arch}_{size[0]}x{size[1]}.json')
    if osp.exists(path):
        with open(path) as f:
            return json.load(f)
    from posattack.utils.fileio import write_json_atomic
    flops = head_and_backbone_flops(arch, size)
    write_json_atomic(path, flops)
    return flops


def _duration(seconds: float) -> str:
    from posattack.attack.run_progress import format_duration
    return format_duration(seconds).replace('about ', '')


def negative_phases(result: dict) -> list[str]:
    """Phases whose CPU seconds are below zero: the per-setting figures are differences of
    two sweeps, and a projection from a negative cost would be a wrong number that looks
    normal."""
    return [phase for phase, seconds in result['seconds'].items() if seconds['cpu'] < 0]


def project(result: dict, settings: int, identify_images: int, overlays: int) -> dict:
    s, n = result['seconds'], result['images']
    # CPU seconds of the one torch thread: the wall time on an idle core (on the shared
    # machine the measured wall time mostly says how busy the other jobs kept it)
    per_image = {phase: s[phase]['cpu'] / n for phase in s}
    per_setting = (per_image['targeted (per setting)'] + per_image['random (per setting)']) / 2
    # the clean pass is one backbone pass and one head pass per image
    backbone = max(per_image['clean pass'] - per_setting, 0.0)
    parts = {
        'build': s['build']['cpu'],
        'identification': per_image['identification'] * identify_images,
        'backbone (1 pass)': backbone * PAPER_IMAGES,
        'settings': per_setting * settings * PAPER_IMAGES,
        'statistics + report': s['statistics']['cpu'] + s['report']['cpu'],
        'overlays': per_image['overlays'] * overlays,
    }
    return dict(parts=parts, total=sum(parts.values()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', nargs='+', choices=list(ARCHITECTURES),
                        default=list(ARCHITECTURES))
    parser.add_argument('--results', default=DEFAULT_RESULTS)
    parser.add_argument('--no-flops', action='store_true', help='skip the FLOP count')
    parser.add_argument('--flops-only', action='store_true',
                        help='count (and keep) the FLOPs of --arch; print nothing else')
    parser.add_argument('--flops-size', type=int, nargs=2, default=SIZE, metavar=('H', 'W'),
                        help='input size of the FLOP count (default 1024 2048; a smaller one '
                        'only checks the tool: the table assumes the default)')
    args = parser.parse_args(argv)
    if args.flops_only:
        os.makedirs(args.results, exist_ok=True)
        for arch in args.arch:
            print(arch, kept_flops(args.results, arch, args.flops_size))
        return 0
    from posattack.attack.experiment import AttackOptions
    opts = AttackOptions(config='', checkpoint='', work_dir='')
    print(f'The paper\'s experiment projected: {PAPER_IMAGES} images at {SIZE[0]}x{SIZE[1]}, '
          f'identification on {opts.identify_max_images} held-out images, '
          f'{opts.num_overlays} overlays,')
    print('the default settings (first round of sequential draws; in brackets: all '
          f'{opts.max_draws} draws). From the per-phase table\'s CPU seconds (one torch '
          'thread:\nthe wall time on one idle core of that machine).\n')
    header = ['architecture', 'images measured', 'settings', 'build', 'identification',
              'backbone', 'settings time', 'stats + report', 'overlays', 'total (max draws)',
              'backbone GFLOPs', 'head GFLOPs', 'TFLOPs per run']
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for arch in args.arch:
        measured = [n for n in (4, 2, 1)
                    if osp.exists(osp.join(args.results, f'{arch}_{n}img.json'))]
        label = ARCHITECTURES[arch]['label']
        if not measured:
            print(f'| {label} | not measured |' + ' |' * (len(header) - 2))
            continue
        with open(osp.join(args.results, f'{arch}_{measured[0]}img.json')) as f:
            result = json.load(f)
        negative = negative_phases(result)
        if negative:
            print(f'| {label} | {measured[0]} | not computed: {", ".join(negative)} measured '
                  'below zero (rerun that run) |' + ' |' * (len(header) - 3))
            continue
        first, most = default_settings(result['channels'])
        low = project(result, first - 1, opts.identify_max_images, opts.num_overlays)
        high = project(result, most - 1, opts.identify_max_images, opts.num_overlays)
        flops = None if args.no_flops else kept_flops(args.results, arch, args.flops_size)
        cells = [label, str(measured[0]), f'{first} ({most})']
        cells += [_duration(low['parts'][k]) for k in ('build', 'identification',
                                                      'backbone (1 pass)', 'settings',
                                                      'statistics + report', 'overlays')]
        cells.append(f"{_duration(low['total'])} ({_duration(high['total'])})")
        if flops is None:
            cells += ['-', '-', '-']
        else:
            views = 3  # identification: each image and its two flips
            total = (flops['backbone'] * (PAPER_IMAGES + views * opts.identify_max_images)
                     + flops['head'] * first * PAPER_IMAGES)
            cells += [f"{flops['backbone'] / 1e9:.0f}", f"{flops['head'] / 1e9:.0f}",
                      f'{total / 1e12:.0f}']
        print('| ' + ' | '.join(cells) + ' |')
    print('\nA projection from measured per-phase figures, not a measured run. One backbone '
          'pass (the ranking\nis identified on held-out images first; each further round of '
          'draws adds one); a setting costs what\none more setting cost in the measured sweep '
          '(batched, with the linear shortcut). More processes\n(tools/dist_attack.sh) divide '
          'everything but build, statistics and report.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
