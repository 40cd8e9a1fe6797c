"""How much does the sweep's fast path save over one full forward per setting? Ratios, one run.

On the same images and the same settings (clean + 4 targeted N + 4 N x 5 random seeds = 25
by default), times three ways of getting every setting's label maps:

* full:     ``model.predict`` under a ChannelRemoval hook, once per setting (what mmseg's
            test loop with a ChannelRemovalHook costs, setting after setting);
* exact:    ``FeatureSplit.prefix`` once per batch + ``predict_from`` per setting, exact=True
            (bit-identical labels; the table says whether they were);
* shortcut: the same with the linear shortcut (exact=False, the sweep's default).

It prints exact/full and shortcut/full; the target is <= 0.5. The three paths alternate batch
by batch, so a noisy, shared machine slows them alike; compare ratios within one run only.
Preprocessing and metrics are left out of every path (they cost the same in each).

Then the cost of more random draws: the whole default run (``run_sweep`` identifying on the
fly, every setting, then the bootstrap statistics of ``posattack.report.significance``) with each
``--compare-seeds`` count, against today's run before per-image statistics (5 seeds, no
per-image counts, no bootstrap). Rounds alternate the order, and the ratios share one run.

Then the whole sweep with settings batched through the head (posattack.attack.batched_settings)
against one setting per head forward, with the first batch's cost estimate against the
measured time.

Then peak memory of the sweep itself (``posattack.attack.sweep.run_sweep``, identifying the channels
on the fly as tools/attack.py does) on N and on 4N images, each run in its own subprocess:
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the peak resident set size (tracemalloc does
not see torch's allocations). Flat memory means the 4N peak equals the N peak.

    python tools/benchmark_attack.py --model demo --threads 1
    python tools/benchmark_attack.py --model r50 --images 2 --threads 1
    python tools/benchmark_attack.py --model both --num-channels 8 16 --seeds 2 --no-memory
    python tools/benchmark_attack.py --model demo --images 8 --compare-seeds 5 10 20 --only-draws
    python tools/benchmark_attack.py --model demo --images 12 --only-batched --repeat 2

On a machine whose cores other jobs share, --threads 1 gives steadier figures: several torch
threads spinning against other processes can make every path many times slower.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)

# Each model with its input size (h, w): the demo at the synthetic data's own size; the
# paper's architecture (mmseg's DeepLabv3-R50-D8, zoo SyncBN run as BN) at a quarter of
# Cityscapes' 1024x2048 per side, which a CPU still manages.
BENCHMARK_MODELS = {
    'demo': dict(config=osp.join(REPO_ROOT, 'configs', 'demo',
                                 'deeplabv3_r18-tiny_synthetic-cityscapes.py'),
                 size=(128, 256)),
    'r50': dict(config=osp.join(REPO_ROOT, 'configs', 'paper',
                                'deeplabv3_r50-d8_cityscapes-512x1024_posattack.py'),
                size=(256, 512)),
}
PATHS = ('full', 'exact', 'shortcut')
# Wall time is what a user waits; process CPU time is what the work costs, and moves less when
# other jobs share the cores (both are printed).
CLOCKS = {'cpu': time.process_time, 'wall': time.perf_counter}
DEFAULT_FRACTIONS = (0.01, 0.05, 0.1, 0.2)
MEMORY_REGIONS = ['paper', dict(type='border', bands=4)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--model', choices=['demo', 'r50', 'both'], default='both')
    parser.add_argument('--images', type=int, default=2,
                        help='N: images timed, and the smaller memory run (the larger is 4N)')
    parser.add_argument('--batch-size', type=int, default=1)
    counts = parser.add_mutually_exclusive_group()
    counts.add_argument('--num-channels', type=int, nargs='+', help='channel counts N')
    counts.add_argument('--fractions', type=float, nargs='+',
                        help='fractions of the channels (default 0.01 0.05 0.1 0.2)')
    parser.add_argument('--seeds', type=int, default=5, help='random settings per count')
    parser.add_argument('--repeat', type=int, default=1,
                        help='timing rounds; the fastest round of each path counts')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch decides)')
    parser.add_argument('--data-root', help='a Cityscapes-layout folder with at least 4N val '
                        'images (default: synthetic scenes in a temporary folder)')
    parser.add_argument('--no-memory', action='store_true', help='skip the memory runs')
    parser.add_argument('--compare-seeds', type=int, nargs='+', default=[5, 20],
                        help='random draws per N to time the whole run with')
    parser.add_argument('--only-draws', action='store_true',
                        help='time only the random-draw counts (no paths, no memory)')
    parser.add_argument('--only-batched', action='store_true',
                        help='time only batched settings against one at a time')
    parser.add_argument('--max-ratio', type=float,
                        help='exit with status 1 when shortcut/full (CPU time) exceeds this')
    parser.add_argument('--memory-worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ('images', 'batch_size', 'repeat'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    if args.seeds < 0:
        parser.error('--seeds must be >= 0')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be at least 1')
    return args


# ----------------------------------------------------------------------------- set-up
def data_options(model_name: str, data_root: str) -> dict:
    """Config overrides: the data folder and a test Resize to the benchmark's input size."""
    height, width = BENCHMARK_MODELS[model_name]['size']
    return {'test_dataloader.dataset.data_root': data_root,
            'test_dataloader.dataset.pipeline.1.scale': (width, height),
            'test_dataloader.num_workers': 0,
            'test_dataloader.persistent_workers': False}


def build_model(model_name: str, data_root: str):
    """(model, cfg) with random weights, eval mode, CPU (SyncBN becomes BN)."""
    from posattack.models.builder import load_segmentor
    torch.manual_seed(0)
    model, cfg = load_segmentor(BENCHMARK_MODELS[model_name]['config'], None,
                                cfg_options=data_options(model_name, data_root))
    resize = cfg.test_dataloader.dataset.pipeline[1]
    if resize.get('type') != 'Resize':
        raise ValueError(f"{BENCHMARK_MODELS[model_name]['config']}: expected the test "
                         f"pipeline's second step to be Resize, got {resize.get('type')!r}.")
    return model, cfg


def build_loader(cfg, batch_size: int, num_images: int):
    from posattack.data.dataloader import build_test_dataloader
    loader = build_test_dataloader(cfg, batch_size, num_images)
    if len(loader.dataset) < num_images:
        raise ValueError(f'the data folder has {len(loader.dataset)} val images, the run needs '
                         f'{num_images} (4N for the memory runs): pass another --data-root, fewer '
                         '--images, or --no-memory.')
    return loader


def attacked_channels(model, cfg) -> int:
    from posattack.attack.feature_split import FeatureSplit
    from posattack.channels.layers import default_layer, resolve_layer
    split = FeatureSplit(model, resolve_layer(model, default_layer(model)))
    batch = next(iter(build_loader(cfg, 1, 1)))
    with torch.no_grad():
        inputs = model.data_preprocessor(batch, False)['inputs']
        return int(split.attacked(split.prefix(inputs)).shape[1])


def make_settings(num_total: int, args) -> list:
    from posattack.attack.settings import build_settings
    fractions = args.fractions
    if args.num_channels is None and fractions is None:
        fractions = list(DEFAULT_FRACTIONS)
    return build_settings(num_total, args.num_channels, fractions, args.seeds)


def channels_of(settings, num_total: int) -> dict[str, list[int]]:
    """Channel ids per setting. Targeted ones take a fixed stand-in order: time depends on
    how many channels go, not on which (identification is not what is timed here)."""
    from posattack.channels import select_channels
    stand_in_order = np.random.default_rng(2021).permutation(num_total).tolist()
    channels = {}
    for setting in settings:
        if setting.mode == 'clean':
            channels[setting.key] = []
        elif setting.mode == 'targeted':
            channels[setting.key] = stand_in_order[:setting.num_channels]
        else:
            channels[setting.key] = select_channels('random', num_total,
                                                    num_channels=setting.num_channels,
                                                    seed=setting.seed)
    return channels


# ----------------------------------------------------------------------------- timing
def _run_path(path: str, model, splits, ref, inputs, samples, channel_lists):
    """Label maps of every setting for one batch, the way ``path`` computes them."""
    from posattack.channels.removal import ChannelRemoval
    labels = []
    if path == 'full':
        for channels in channel_lists:
            with ChannelRemoval(model, ref.name, channels):
                predicted = model.predict(inputs, samples)
            labels.append([sample.pred_sem_seg.data[0] for sample in predicted])
        return labels
    split = splits[path]
    feats = split.prefix(inputs)
    for channels in channel_lists:
        labels.append(split.predict_from(feats, inputs, samples, channels))
    return labels


def time_paths(model, cfg, args, channel_lists: Sequence[Sequence[int]]) -> dict:
    """Seconds per path over ``args.images`` images, plus how far the fast labels agree."""
    from posattack.attack.feature_split import FeatureSplit
    from posattack.channels.layers import default_layer, resolve_layer
    ref = resolve_layer(model, default_layer(model))
    splits = {'exact': FeatureSplit(model, ref, exact=True),
              'shortcut': FeatureSplit(model, ref, exact=False)}
    if not splits['exact'].fast:
        raise ValueError(f'the fast path is off for this model ({splits["exact"].why_slow}): '
                         'nothing to compare.')
    with torch.no_grad():
        batches = [model.data_preprocessor(batch, False)
                   for batch in build_loader(cfg, args.batch_size, args.images)]
        # First calls pay for kernel selection and allocator growth, and the shortcut's
        # convolutions take a new input shape for every channel count: warm each count once.
        warm = batches[0]
        one_per_count = list({len(c): c for c in channel_lists}.values())
        for path in PATHS:
            _run_path(path, model, splits, ref, warm['inputs'], warm['data_samples'],
                      one_per_count)
        best = {(path, clock): float('inf') for path in PATHS for clock in CLOCKS}
        identical = agreement_sum = pixels = 0
        for _ in range(args.repeat):
            spent = dict.fromkeys(best, 0.0)
            for index, batch in enumerate(batches):
                results = {}
                order = PATHS[index % 3:] + PATHS[:index % 3]  # share the machine's noise
                for path in order:
                    start = {clock: read() for clock, read in CLOCKS.items()}
                    results[path] = _run_path(path, model, splits, ref, batch['inputs'],
                                              batch['data_samples'], channel_lists)
                    for clock, read in CLOCKS.items():
                        spent[path, clock] += read() - start[clock]
                for full, exact, shortcut in zip(results['full'], results['exact'],
                                                 results['shortcut']):
                    for f, e, s in zip(full, exact, shortcut):
                        identical += int(torch.equal(f, e))
                        agreement_sum += int((f == s).sum())
                        pixels += f.numel()
            best = {key: min(best[key], spent[key]) for key in best}
    checked = args.repeat * args.images * len(channel_lists)
    return dict(seconds=best, identical=identical, checked=checked,
                shortcut_agreement=agreement_sum / max(pixels, 1),
                shortcut_convs=len(splits['shortcut'].shortcut.convs))


# ----------------------------------------------------------------------------- draws
def time_draw_counts(model, cfg, args) -> dict:
    """Seconds (CPU) of a whole default run per random-draw count, plus today's baseline.

    Keys: ``'baseline'`` (5 draws, no per-image counts, no bootstrap: the run before
    per-image statistics) and each ``--compare-seeds`` count (per-image counts + bootstrap).
    """
    from posattack.attack.experiment import DEFAULT_BOOTSTRAP
    from posattack.attack.feature_split import FeatureSplit
    from posattack.attack.settings import build_settings
    from posattack.attack.sweep import run_sweep
    from posattack.channels.layers import default_layer, resolve_layer
    from posattack.report.significance import build_statistics
    split = FeatureSplit(model, resolve_layer(model, default_layer(model)))
    loader = build_loader(cfg, args.batch_size, args.images)
    num_total = attacked_channels(model, cfg)
    fractions = args.fractions
    if args.num_channels is None and fractions is None:
        fractions = list(DEFAULT_FRACTIONS)
    runs = [('baseline', 5, False)] + [(n, n, True) for n in args.compare_seeds]
    best = {name: float('inf') for name, _, _ in runs}
    num_classes = len(model.dataset_meta['classes'])
    for round_index in range(args.repeat + 1):   # round 0 warms up and is not counted
        order = runs if round_index % 2 else runs[::-1]
        for name, seeds, statistics in order:
            settings = build_settings(num_total, args.num_channels, fractions, seeds)
            start = time.process_time()
            state = run_sweep(split, loader, settings, num_total, MEMORY_REGIONS, num_classes,
                              identify=True, progress=False, record_per_image=statistics)
            if statistics:
                build_statistics([dict(s.to_dict(), key=s.key) for s in settings],
                                 state.per_image, num_resamples=DEFAULT_BOOTSTRAP)
            if round_index:
                best[name] = min(best[name], time.process_time() - start)
    return best


# ----------------------------------------------------------------------------- batched
def time_batched_settings(model, cfg, args) -> dict:
    """The whole sweep (identify on the fly + every setting) with one setting per head forward
    against settings batched as the sweep batches them (k from memory): CPU seconds, the
    fastest of ``args.repeat`` rounds after a warm-up round (orders alternate), whether every
    confusion matrix agreed, and the first batch's estimate against the measured wall time."""
    from posattack.attack.feature_split import FeatureSplit
    from posattack.attack.run_progress import RunProgress
    from posattack.attack.sweep import run_sweep
    from posattack.channels.layers import default_layer, resolve_layer
    split = FeatureSplit(model, resolve_layer(model, default_layer(model)))
    loader = build_loader(cfg, args.batch_size, args.images)
    num_total = attacked_channels(model, cfg)
    settings = make_settings(num_total, args)
    num_classes = len(model.dataset_meta['classes'])
    runs = {'one at a time': 1, 'batched': None}
    best = dict.fromkeys(runs, float('inf'))
    confusions, estimates = {}, []
    for round_index in range(args.repeat + 1):   # round 0 warms up and is not counted
        order = list(runs.items()) if round_index % 2 else list(runs.items())[::-1]
        for name, per_pass in order:
            tracker = RunProgress(args.images, enabled=False)
            start, wall = time.process_time(), time.perf_counter()
            state = run_sweep(split, loader, settings, num_total, MEMORY_REGIONS, num_classes,
                              identify=True, progress=tracker, record_per_image=False,
                              settings_per_pass=per_pass)
            if round_index:
                best[name] = min(best[name], time.process_time() - start)
                estimates.append((tracker.estimate_s, time.perf_counter() - wall))
            confusions[name] = state.confusions
    same = all(np.array_equal(confusions['batched'][key], value)
               for key, value in confusions['one at a time'].items())
    return dict(seconds=best, identical=same, settings=len(settings), estimates=estimates)


def print_batched(results: list[dict]) -> None:
    rows = []
    for r in results:
        b = r['batched']
        one, batched = b['seconds']['one at a time'], b['seconds']['batched']
        worst = max(max(e / m, m / e) for e, m in b['estimates'])
        rows.append([r['model'], r['images'], b['settings'], f'{one:.2f}', f'{batched:.2f}',
                     f'{batched / one:.3f}', 'yes' if b['identical'] else 'NO',
                     f'{worst:.2f}'])
    print('\nWhole sweep (identify + every setting), one setting per head forward against '
          'settings batched\n(k from memory), CPU seconds; estimate: the first batch\'s '
          'projection against the measured\nwall time, worst factor either way over the '
          'timed runs:')
    print(_table(['model', 'images', 'settings', 'one at a time', 'batched', 'ratio',
                  'confusions identical', 'estimate off by'], rows))


# ----------------------------------------------------------------------------- memory
def _current_rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def memory_worker(args) -> None:
    """In its own process: build, note RSS, run the sweep, print peak RSS as JSON."""
    from posattack.attack.feature_split import FeatureSplit
    from posattack.attack.sweep import run_sweep
    from posattack.channels.layers import default_layer, resolve_layer
    model, cfg = build_model(args.model, args.data_root)
    num_total = attacked_channels(model, cfg)
    loader = build_loader(cfg, args.batch_size, args.images)
    split = FeatureSplit(model, resolve_layer(model, default_layer(model)))
    settings = make_settings(num_total, args)
    after_build = _current_rss_mb()
    start = time.perf_counter()
    state = run_sweep(split, loader, settings, num_total, MEMORY_REGIONS,
                      num_classes=len(model.dataset_meta['classes']), identify=True,
                      progress=False)
    # ru_maxrss is in kilobytes on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(images=state.num_images, settings=len(settings),
                          rss_after_build_mb=after_build, peak_rss_mb=peak,
                          seconds=time.perf_counter() - start)))


def measure_memory(model_name: str, num_images: int, data_root: str, args) -> dict:
    command = [sys.executable, osp.abspath(__file__), '--memory-worker', '--model', model_name,
               '--images', str(num_images), '--batch-size', str(args.batch_size),
               '--seeds', str(args.seeds), '--data-root', data_root]
    if args.num_channels is not None:
        command += ['--num-channels'] + [str(n) for n in args.num_channels]
    if args.fractions is not None:
        command += ['--fractions'] + [str(f) for f in args.fractions]
    if args.threads is not None:
        command += ['--threads', str(args.threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO_ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f'memory run on {num_images} images failed:\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report
def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def benchmark_model(model_name: str, data_root: str, args) -> dict:
    model, cfg = build_model(model_name, data_root)
    if args.only_batched:
        return dict(model=model_name, images=args.images,
                    batched=time_batched_settings(model, cfg, args))
    if args.only_draws:
        return dict(model=model_name, images=args.images,
                    draws=time_draw_counts(model, cfg, args))
    if not args.no_memory:
        build_loader(cfg, 1, 4 * args.images)  # fails now if the 4N run would lack images
    num_total = attacked_channels(model, cfg)
    settings = make_settings(num_total, args)
    channels = channels_of(settings, num_total)
    timing = time_paths(model, cfg, args, [channels[s.key] for s in settings])
    counts = sorted({s.num_channels for s in settings if s.mode != 'clean'})
    result = dict(model=model_name, size=BENCHMARK_MODELS[model_name]['size'],
                  channels=num_total, counts=counts, settings=len(settings),
                  images=args.images, draws=time_draw_counts(model, cfg, args),
                  batched=time_batched_settings(model, cfg, args), **timing)
    if not args.no_memory:
        del model  # the workers measure their own processes; keep this one small meanwhile
        result['memory'] = [measure_memory(model_name, n, data_root, args)
                            for n in (args.images, 4 * args.images)]
    return result


def print_draws(results: list[dict]) -> None:
    rows = []
    for r in results:
        base = r['draws']['baseline']
        for name, seconds in r['draws'].items():
            label = '5 (before per-image statistics)' if name == 'baseline' else \
                f'{name} (with bootstrap)'
            rows.append([r['model'], r['images'], label, f'{seconds:.2f}',
                         f'{seconds / base:.2f}'])
    print('\nWhole default run (identify + every setting [+ statistics]) per random-draw '
          'count,\nCPU seconds, ratio to the run before per-image statistics:')
    print(_table(['model', 'images', 'draws per N', 'CPU s', 'ratio'], rows))


def print_report(results: list[dict], args) -> None:
    print(f'\ntorch threads: {torch.get_num_threads()}   batch size: {args.batch_size}   '
          f'timing rounds: {args.repeat} (fastest counts)')
    if args.only_draws or args.only_batched:
        (print_batched if args.only_batched else print_draws)(results)
        return
    for r in results:
        print(f"{r['model']}: {r['size'][0]}x{r['size'][1]} inputs, {r['channels']} channels "
              f"attacked, N in {r['counts']}, {r['settings']} settings")
    rows = []
    for r in results:
        s = r['seconds']
        for clock in CLOCKS:
            full = s['full', clock]
            rows.append([r['model'], r['images'], r['settings'], clock, f'{full:.2f}',
                         f"{s['exact', clock]:.2f}", f"{s['exact', clock] / full:.3f}",
                         f"{s['shortcut', clock]:.2f}", f"{s['shortcut', clock] / full:.3f}",
                         f"{r['identical']}/{r['checked']}",
                         f"{100 * r['shortcut_agreement']:.3f}%"])
    print('\nTime for every setting on the same images (seconds; ratio = path / full; '
          'targeted settings\nuse a stand-in channel order, as time depends on N only):')
    print(_table(['model', 'images', 'settings', 'clock', 'full', 'exact', 'ratio', 'shortcut',
                  'ratio', 'exact labels identical', 'shortcut labels agree'], rows))
    memory_rows = []
    for r in results:
        for run in r.get('memory', []):
            memory_rows.append([r['model'], run['images'], run['settings'],
                                f"{run['rss_after_build_mb']:.0f}", f"{run['peak_rss_mb']:.0f}",
                                f"{run['peak_rss_mb'] - run['rss_after_build_mb']:.0f}",
                                f"{run['seconds']:.1f}"])
    if memory_rows:
        print('\nPeak memory of run_sweep (identify on the fly + every setting), one subprocess '
              'per run;\nresource.getrusage ru_maxrss (peak RSS, MB), RSS after building the '
              'model from /proc/self/status:')
        print(_table(['model', 'images', 'settings', 'RSS built', 'peak RSS',
                      'peak - built', 'sweep s'], memory_rows))
        for r in results:
            if len(r.get('memory', [])) == 2:
                small, large = r['memory']
                print(f"{r['model']}: peak RSS {small['peak_rss_mb']:.0f} MB on "
                      f"{small['images']} images, {large['peak_rss_mb']:.0f} MB on "
                      f"{large['images']} ({large['peak_rss_mb'] - small['peak_rss_mb']:+.0f} MB)")
    print_draws(results)
    print_batched(results)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # bad input (data folder, counts, a config): say what, not a traceback
        print(f'error: {error}', file=sys.stderr)
        return 2


def run(args) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('posattack', log_level='WARNING')
    if args.memory_worker:
        memory_worker(args)
        return 0
    names = ['demo', 'r50'] if args.model == 'both' else [args.model]
    results = []
    with tempfile.TemporaryDirectory(prefix='posattack_benchmark_') as tmp:
        for name in names:
            data_root = args.data_root
            if data_root is None:
                from posattack.data.synthetic import generate_cityscapes
                data_root = osp.join(tmp, name)
                num_val = args.images * (1 if args.no_memory or args.only_draws
                                         or args.only_batched else 4)
                generate_cityscapes(data_root, num_train=0, num_val=num_val,
                                    size=BENCHMARK_MODELS[name]['size'], seed=0)
            print(f'benchmarking {name} ...', flush=True)
            results.append(benchmark_model(name, data_root, args))
    print_report(results, args)
    if args.only_draws or args.only_batched:
        return 0
    worst = max(r['seconds']['shortcut', 'cpu'] / r['seconds']['full', 'cpu'] for r in results)
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f'shortcut/full ratio {worst:.3f} exceeds --max-ratio {args.max_ratio}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
