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

    python tools/analysis_tools/benchmark_attack.py --model demo --threads 1
    python tools/analysis_tools/benchmark_attack.py --model r50 --images 2 --threads 1
    python tools/analysis_tools/benchmark_attack.py --model both --num-channels 8 16 --seeds 2 \
        --no-memory
    python tools/analysis_tools/benchmark_attack.py --model demo --images 8 \
        --compare-seeds 5 10 20 --only-draws
    python tools/analysis_tools/benchmark_attack.py --model demo --images 12 --only-batched \
        --repeat 2

On a machine whose cores other jobs share, --threads 1 gives steadier figures: several torch
threads spinning against other processes can make every path many times slower.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import tempfile
from collections.abc import Sequence

import torch
# The models, timing and memory runs: attack_timing.py beside this file (a script's folder is
# first on sys.path).
from attack_timing import BENCHMARK_MODELS, CLOCKS, benchmark_model, memory_worker


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


# ----------------------------------------------------------------------------- report
def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


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
