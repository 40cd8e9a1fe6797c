"""The whole attack against naive full forwards: one ratio, measured in one run.

    python tools/analysis_tools/benchmark_whole_process.py [--model r50] [--images 12] \
        [--train-images 12] [--size 128 256] [--fractions 0.05 0.1 0.2] [--target 0.4]

Times, in this one process, on synthetic Cityscapes scenes (test and train images) and the
model's random-init weights saved as a checkpoint:

* whole: ``posattack.attack.experiment.run_attack`` as tools/attack.py calls it, with the
  library's default options (AttackOptions) except ``fractions`` and ``max_images``, no
  progress bar: start-up (config, model build, checkpoint read, dataloaders; timed
  in-process, so Python's and mmseg's imports are not in it), identification on the held-out
  train images (the default), every setting the default's sequential draws evaluate,
  statistics, report. No overlays: AttackOptions' default (tools/attack.py draws 4 unless
  --no-overlays).
* naive: one ``model.predict`` per setting per test image under a ChannelRemoval hook (what
  mmseg's test loop with ChannelRemovalHook costs, setting after setting), plus every
  identification image and its horizontal and vertical flips through the full model. Only
  the forwards count: the images are read and preprocessed once, outside the clock, and the
  model build is not charged. Targeted settings remove a stand-in channel order (time
  depends on how many channels go, not on which).

The settings the whole run evaluates depend on its sequential draws, so the naive forwards
are cut in two: before the whole run, the first half of the images with the settings known
in advance (clean, targeted, exploratory draws, the primary's first round); after it, the
rest, draw rounds added by the run included. A shared machine then slows both sides alike.
CPU time (the process's, one torch thread by default) moves less with other jobs than wall.
"""
from __future__ import annotations

import argparse
import functools
import os.path as osp
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from unittest import mock

import torch
# The benchmark models and the timing helpers: attack_timing.py beside this file (a script's
# folder is first on sys.path).
from attack_timing import BENCHMARK_MODELS, CLOCKS, build_model, channels_of, data_options

VIEWS = ('image', 'horizontal flip', 'vertical flip')   # the flip difference's three passes
# Phases of the whole run: the names posattack.attack.experiment calls them by.
PHASES = {'start-up': ('load_segmentor', 'build_test_dataloader', 'held_out_loader'),
          'checks, hashes': ('file_sha256', 'image_contents', 'probe_attack', '_num_channels'),
          'identification': ('identify_held_out', ),
          'settings (sweeps)': ('run_sweep', ),
          'statistics': ('build_statistics', ),
          'report': ('write_report', )}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--model', choices=sorted(BENCHMARK_MODELS), default='r50')
    parser.add_argument('--images', type=int, default=12, help='test images scored')
    parser.add_argument('--train-images', type=int, default=12,
                        help='held-out train images (the default identification reads them)')
    parser.add_argument('--size', type=int, nargs=2, default=[128, 256], metavar=('H', 'W'))
    parser.add_argument('--fractions', type=float, nargs='+', default=[0.05, 0.1, 0.2])
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    parser.add_argument('--target', type=float, default=0.4,
                        help='the whole/naive CPU-time ratio to meet')
    parser.add_argument('--work-dir', help="keep the whole run's work dir here (default: a "
                        'temporary folder)')
    args = parser.parse_args(argv)
    for name in ('images', 'train_images', 'threads'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    if min(args.size) < 32:
        parser.error('--size must be at least 32 x 32 (the backbone downsamples 8x or more)')
    return args


# ----------------------------------------------------------------------------- naive side
def naive_units(upfront: list[str], final: list[str], num_test: int, num_train: int
                ) -> tuple[list[tuple], list[tuple]]:
    """(before, after): the naive forwards as ('train', image, view) and ('test', image,
    setting key), each exactly once. Before the whole run: the first half of the images,
    with the settings ``upfront`` (known before the run); after it, the rest."""
    missing = sorted(set(upfront) - set(final))
    if missing:
        raise RuntimeError(f'the whole run did not evaluate {missing[0]}, a setting known in '
                           'advance: the benchmark no longer matches run_attack.')
    first_test, first_train = num_test // 2, num_train // 2
    before = [('train', i, view) for i in range(first_train) for view in VIEWS]
    before += [('test', i, key) for i in range(first_test) for key in upfront]
    after = [('train', i, view) for i in range(first_train, num_train) for view in VIEWS]
    after += [('test', i, key) for i in range(num_test) for key in final
              if i >= first_test or key not in upfront]
    return before, after


def run_naive(model, units, batches: dict, channels: dict) -> dict:
    """Seconds (per clock) of the ``units``' full forwards."""
    from posattack.channels.layers import default_layer
    from posattack.channels.removal import ChannelRemoval
    layer = default_layer(model)
    start = {clock: read() for clock, read in CLOCKS.items()}
    with torch.no_grad():
        for split, index, what in units:
            inputs, samples = batches[split][index]
            if split == 'train':
                dims = {'image': (), 'horizontal flip': (3, ), 'vertical flip': (2, )}[what]
                model.predict(inputs.flip(dims) if dims else inputs, samples)
                continue
            with ChannelRemoval(model, layer, channels[what]):
                model.predict(inputs, samples)
    return {clock: read() - start[clock] for clock, read in CLOCKS.items()}


# ----------------------------------------------------------------------------- whole side
@contextmanager
def phase_clocks(module, phases: dict):
    """While active, the functions ``module`` calls by the names in ``phases`` add their
    seconds (per clock) to the phase; yields {(phase, clock): seconds}."""
    spent = {(phase, clock): 0.0 for phase in phases for clock in CLOCKS}

    def timed(phase, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            start = {clock: read() for clock, read in CLOCKS.items()}
            try:
                return function(*args, **kwargs)
            finally:
                for clock, read in CLOCKS.items():
                    spent[phase, clock] += read() - start[clock]
        return wrapper

    with ExitStack() as stack:
        for phase, names in phases.items():
            for name in names:
                stack.enter_context(mock.patch.object(module, name,
                                                      timed(phase, getattr(module, name))))
        yield spent


def run_whole(opts) -> tuple[dict, dict, dict]:
    """(results, seconds per clock, seconds per (phase, clock)) of one run_attack."""
    from posattack.attack import experiment
    with phase_clocks(experiment, PHASES) as phases:
        start = {clock: read() for clock, read in CLOCKS.items()}
        results = experiment.run_attack(opts)
        total = {clock: read() - start[clock] for clock, read in CLOCKS.items()}
    return results, total, dict(phases)


def upfront_settings(num_total: int, fractions) -> list:
    """The settings run_attack knows before its first sweep, by the library's own rules."""
    from posattack.attack.experiment import DEFAULT_SEEDS, AttackOptions
    from posattack.attack.sequential_draws import first_round_size, primary_draws
    from posattack.attack.settings import build_settings
    design = AttackOptions(config='', checkpoint='', work_dir='').design
    settings = build_settings(num_total, None, fractions, DEFAULT_SEEDS)
    primary = design.primary_num_channels(num_total)
    if any(s.mode == 'targeted' and s.num_channels == primary for s in settings):
        settings += primary_draws(settings, primary, first_round_size(DEFAULT_SEEDS, design))
    return settings


# ----------------------------------------------------------------------------- the run
def measure(args, root: str) -> dict:
    from posattack.attack.experiment import AttackOptions
    from posattack.attack.settings import AttackSetting
    from posattack.data.dataloader import build_split_dataloader, build_test_dataloader
    from posattack.data.synthetic import generate_cityscapes
    size = tuple(args.size)
    data_root = osp.join(root, 'data')
    generate_cityscapes(data_root, num_train=args.train_images, num_val=args.images, size=size,
                        seed=0)
    model, cfg = build_model(args.model, data_root, size)
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': data_root})
    checkpoint = osp.join(root, 'random_init.pth')   # the user's checkpoint: seed-0 weights
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    options = dict(data_options(args.model, data_root, size),
                   **{'train_dataloader.dataset.data_root': data_root})
    with torch.no_grad():
        batches = {split: [(b['inputs'], b['data_samples'])
                           for b in map(lambda d: model.data_preprocessor(d, False), loader)]
                   for split, loader in (
                       ('test', build_test_dataloader(cfg, 1, args.images)),
                       ('train', build_split_dataloader(cfg, 'train', batch_size=1)))}
        model.predict(*batches['test'][0])   # the first call pays for kernel selection
    num_total = int(model.backbone(batches['test'][0][0])[-1].shape[1])
    upfront = upfront_settings(num_total, args.fractions)
    opts = AttackOptions(config=BENCHMARK_MODELS[args.model]['config'], checkpoint=checkpoint,
                         work_dir=args.work_dir or osp.join(root, 'work'),
                         max_images=args.images, cfg_options=options,
                         fractions=list(args.fractions), progress=False)
    # naive, first half -> the whole run -> naive, the rest
    before_channels = channels_of(upfront, num_total)
    before, _ = naive_units([s.key for s in upfront], [s.key for s in upfront], args.images,
                            args.train_images)
    naive_before = run_naive(model, before, batches, before_channels)
    results, whole, phases = run_whole(opts)
    names = {f.name for f in fields(AttackSetting)}
    final = [AttackSetting(**{k: v for k, v in s.items() if k in names})
             for s in results['settings']]
    _, after = naive_units([s.key for s in upfront], [s.key for s in final], args.images,
                           args.train_images)
    naive_after = run_naive(model, after, batches, channels_of(final, num_total))
    naive = {clock: naive_before[clock] + naive_after[clock] for clock in CLOCKS}
    primary = next((t for t in results.get('tests', []) if t.get('primary')), None)
    return dict(model=args.model, size=size, channels=num_total, images=results['num_images'],
                identification_images=results['ranking_source'].get('num_images'),
                settings=len(final), upfront=len(upfront),
                naive_forwards=len(before) + len(after), whole=whole, naive=naive,
                naive_halves=[(len(before), naive_before), (len(after), naive_after)],
                phases=phases, primary=primary)


def print_report(r: dict, args) -> None:
    height, width = r['size']
    draws = f", primary test: {r['primary']['num_draws']} draws at " \
        f"N={r['primary']['num_channels']}" if r['primary'] else ''
    print(f"model {args.model} ({osp.basename(BENCHMARK_MODELS[args.model]['config'])}), "
          f'random init, {height}x{width}, {r["channels"]} channels attacked, torch threads '
          f'{torch.get_num_threads()}')
    print(f"whole: run_attack on {r['images']} test images, identification on "
          f"{r['identification_images']} train images, fractions "
          f"{' '.join(map(str, args.fractions))}: {r['settings']} settings "
          f"({r['upfront']} known in advance{draws})")
    print(f"naive: {r['naive_forwards']} full forwards ({r['settings']} settings x "
          f"{r['images']} images + {r['identification_images']} train images x "
          f"{len(VIEWS)} views)\n")
    print('| | CPU s | wall s |\n|---|---|---|')
    for name in ('whole', 'naive'):
        print(f"| {name} | {r[name]['cpu']:.2f} | {r[name]['wall']:.2f} |")
    ratio = {clock: r['whole'][clock] / r['naive'][clock] for clock in CLOCKS}
    print(f"| whole / naive | {ratio['cpu']:.3f} | {ratio['wall']:.3f} |\n")
    (first, early), (rest, late) = r['naive_halves']
    print(f"naive CPU s per forward: {early['cpu'] / max(first, 1):.3f} before the whole run "
          f"({first} forwards), {late['cpu'] / max(rest, 1):.3f} after it ({rest}): the "
          'drift of the machine\n')
    print("The whole run by phase (functions posattack.attack.experiment calls), and each "
          'phase in naive forwards\n(the naive CPU seconds per forward):')
    per_forward = r['naive']['cpu'] / r['naive_forwards']
    print('| phase | CPU s | wall s | share of whole (CPU) | naive forwards |\n'
          '|---|---|---|---|---|')
    phase_seconds = {phase: {clock: r['phases'][phase, clock] for clock in CLOCKS}
                     for phase in PHASES}
    phase_seconds['other'] = {clock: r['whole'][clock] - sum(
        s[clock] for s in phase_seconds.values()) for clock in CLOCKS}
    for phase, s in phase_seconds.items():
        print(f"| {phase} | {s['cpu']:.1f} | {s['wall']:.1f} | "
              f"{s['cpu'] / r['whole']['cpu']:.1%} | {s['cpu'] / per_forward:.1f} |")
    met = 'met' if ratio['cpu'] <= args.target else 'not met'
    print(f"\ntarget: whole / naive <= {args.target} (CPU time): {met} ({ratio['cpu']:.3f})")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('posattack', log_level='WARNING')
    try:
        with tempfile.TemporaryDirectory(prefix='posattack_whole_') as root:
            result = measure(args, root)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f'error: {error}', file=sys.stderr)  # bad input: what, not a traceback
        return 2
    print_report(result, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
