"""The attack at Cityscapes' own scale, phase by phase: time per image and peak memory.

For each architecture (mmseg zoo configs from configs/paper, random weights, SyncBN as BN)
and each image count (default 1, 2, 4), one subprocess runs the attack's phases on synthetic
1024x2048 scenes with all 19 classes (tools/dataset_converters/make_synthetic_cityscapes.py
--all-classes) and
records each phase's wall and CPU time and the process's peak memory:

* build:           the segmentor from its config (posattack.models.builder.load_segmentor)
* identification:  the flip difference on the scored images (each image and its flips)
* clean pass:      run_sweep with the clean setting alone (the backbone once, the head once)
* targeted/random: run_sweep with clean + S settings of that kind, minus the clean pass,
                   over S: what one more setting costs (settings batched as the sweep does)
* statistics:      posattack.report.significance.build_statistics (2000 bootstrap resamples)
* report:          posattack.report.markdown.write_report (results.json/.csv, plots, report.md)
* overlays:        one overlay panel per image, rendered and written as tools/attack.py does
                   (the labels, which a real run takes from the sweep, are not timed)

Peak memory is the process's peak resident set (getrusage ru_maxrss), which covers torch's
allocations; flat memory means it does not grow from 1 to 4 images. Each (architecture,
images) result is kept as JSON in --results, so the table resumes and a part that did not
run in time says "not measured".

    python tools/analysis_tools/benchmark_full_resolution.py --arch deeplabv3_r50 --images 1 2 4
    python tools/analysis_tools/benchmark_full_resolution.py --table-only  # kept results' table
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile

# The architectures and the worker: full_resolution_worker.py beside this file (a script's
# folder is first on sys.path).
from full_resolution_worker import ARCHITECTURES, PHASES, REPO_ROOT, SIZE, worker

DEFAULT_RESULTS = osp.join(REPO_ROOT, 'work_dirs', 'tables', 'full_resolution')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--arch', nargs='+', choices=list(ARCHITECTURES),
                        default=list(ARCHITECTURES))
    parser.add_argument('--images', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--settings-per-kind', type=int, default=2,
                        help='targeted and random settings timed (each kind), N = 5%% and 10%%')
    parser.add_argument('--results', default=DEFAULT_RESULTS,
                        help='folder of per-run JSON results (kept: the table resumes)')
    parser.add_argument('--data-root', help='a Cityscapes-layout folder with enough 1024x2048 '
                        'val images (default: synthetic scenes made in --results)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    parser.add_argument('--size', type=int, nargs=2, default=SIZE, metavar=('H', 'W'),
                        help='image size (default Cityscapes\' 1024 2048; smaller for a quick '
                        'check of the tool itself)')
    parser.add_argument('--table-only', action='store_true',
                        help='print the table from kept results; run nothing')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.images) < 1 or args.settings_per_kind < 1 or args.threads < 1:
        parser.error('--images, --settings-per-kind and --threads must be at least 1')
    return args


# ----------------------------------------------------------------------------- the driver
def _result_path(results: str, arch: str, images: int) -> str:
    return osp.join(results, f'{arch}_{images}img.json')


def _ensure_data(args) -> str:
    if args.data_root:
        return args.data_root
    root = osp.join(args.results, 'data')
    marker = osp.join(root, '.posattack_synthetic.json')
    needed = max(args.images)
    if osp.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        if info.get('complete') and info.get('num_val', 0) >= needed \
                and info.get('size') == list(args.size) and info.get('all_classes'):
            return root
    from posattack.data.synthetic import generate_cityscapes
    generate_cityscapes(root, num_train=0, num_val=needed, size=tuple(args.size), seed=0,
                        all_classes=True)
    return root


def run_one(args, arch: str, images: int, data_root: str) -> None:
    path = _result_path(args.results, arch, images)
    if osp.exists(path):
        print(f'[full resolution] {arch} on {images} images: kept in {path}', flush=True)
        return
    print(f'[full resolution] {arch} on {images} images ...', flush=True)
    with tempfile.TemporaryDirectory(prefix='posattack_full_') as out_dir:
        command = [sys.executable, osp.abspath(__file__), '--worker', '--arch', arch,
                   '--images', str(images), '--settings-per-kind', str(args.settings_per_kind),
                   '--data-root', data_root, '--threads', str(args.threads),
                   '--size', str(args.size[0]), str(args.size[1]),
                   '--results', out_dir]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=os.pathsep.join(
            [REPO_ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f'{arch} on {images} images failed:\n{done.stderr[-3000:]}')
    result = json.loads(done.stdout.strip().splitlines()[-1])
    from posattack.utils.fileio import write_json_atomic
    write_json_atomic(path, result)


def _seconds(value: float) -> str:
    # the per-setting figures are differences of two sweeps: when the other jobs' load
    # changed between them, one can come out below zero, which is no cost at all
    return f'{value:.1f}' if value >= 0 else 'not computed'


def _cell(result, phase) -> str:
    seconds = result['seconds'][phase]
    per = 1 if phase in ('build', 'statistics', 'report') else result['images']
    return f"{_seconds(seconds['wall'] / per)} / {_seconds(seconds['cpu'] / per)}"


# Growth of the peak from the fewest to the most images that still counts as flat. Reruns
# of one image count differed by up to 2% (2026-12-05, the superseded runs against their
# reruns), while one float32 19-class logit map kept per 1024x2048 image adds about 3% of a
# 5 GB peak per image: 9% from 1 to 4 images, which this threshold sees.
FLAT_GROWTH = 0.05


def memory_in_images(args) -> list[str]:
    """Per architecture, the peak resident set from the fewest to the most images measured
    and whether it stays within :data:`FLAT_GROWTH` (per-image state that grew with the run,
    e.g. kept logits or masks, would show here as a step per image)."""
    lines = []
    for arch in args.arch:
        peaks = {}
        for images in sorted(args.images):
            path = _result_path(args.results, arch, images)
            if osp.exists(path):
                with open(path) as f:
                    peaks[images] = json.load(f)['peak_rss_mb']
        label = ARCHITECTURES[arch]['label']
        if len(peaks) < 2:
            lines.append(f'{label}: peak memory over images not computed (image counts '
                         f'measured: {len(peaks)}; 2 needed).')
            continue
        fewest, most = min(peaks), max(peaks)
        growth = max(peaks.values()) / peaks[fewest] - 1
        verdict = (f'flat (within {FLAT_GROWTH:.0%})' if growth <= FLAT_GROWTH
                   else f'grows by more than {FLAT_GROWTH:.0%}')
        lines.append(f'{label}: peak RSS ' + ', '.join(
            f'{peaks[n]:.0f} MB on {n}' for n in sorted(peaks)) +
            f' image(s): {fewest} to {most} images {verdict}, largest peak '
            f'{growth:+.1%} of the {fewest}-image peak.')
    return lines + ['']


def format_table(args) -> str:
    lines = [f'{args.size[0]}x{args.size[1]} synthetic scenes. Wall / CPU seconds per image '
             '(build, statistics and report: per run, they do not grow with images);',
             'targeted and random: one more setting, per image. Peak RSS in MB (getrusage). '
             'Random weights.',
             f'Each row is one run kept in {osp.relpath(args.results, REPO_ROOT)} (one process '
             'per architecture and image count); a table made from kept runs took only the '
             'time to read them.', '']
    header = ['architecture', 'images', 'fast path'] + list(PHASES) + [
        'RSS built', 'peak RSS', 'estimate off by', 'load avg']
    lines.append('| ' + ' | '.join(header) + ' |')
    lines.append('|' + '---|' * len(header))
    for arch in args.arch:
        for images in args.images:
            path = _result_path(args.results, arch, images)
            label = ARCHITECTURES[arch]['label']
            if not osp.exists(path):
                lines.append(f'| {label} | {images} | ' + ' | '.join(
                    ['not measured'] * (len(header) - 2)) + ' |')
                continue
            with open(path) as f:
                r = json.load(f)
            cells = [label, str(images), 'yes' if r['fast_path'] else 'no']
            cells += [_cell(r, phase) for phase in PHASES]
            if r.get('overlay_phase') != 'render':  # kept by the first version of this tool
                cells[3 + PHASES.index('overlays')] += ' (with its predictions)'

            off = [max(e / m, m / e) for e, m in r.get('estimates', []) if e and m]
            cells += [f"{r['rss_built_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
                      f'{max(off):.2f}' if off and images > 1 else '-',
                      f"{r['load_average'][0]:.1f}"]
            lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
    lines += memory_in_images(args)
    lines.append(f'Settings timed per kind: {args.settings_per_kind}; torch threads: '
                 f'{args.threads}; estimate off by: the first batch\'s projection of each sweep '
                 'against its measured wall time, worst factor either way (from 2 images on; '
                 'with one image the first batch is the sweep); load avg: the machine\'s '
                 '1-minute load when the run ended (other jobs share the cores); not computed: a '
                 'difference of two sweeps that came out below zero (the load changed '
                 'between them; rerun that row).')
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.worker:
        from mmengine.logging import MMLogger
        MMLogger.get_instance('posattack', log_level='WARNING')
        print(json.dumps(worker(args.arch[0], args.images[0], args.data_root,
                                args.settings_per_kind, args.results, tuple(args.size))))
        return 0
    try:
        if not args.table_only:
            os.makedirs(args.results, exist_ok=True)
            data_root = _ensure_data(args)
            for arch in args.arch:
                for images in sorted(args.images):
                    run_one(args, arch, images, data_root)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted: finished runs are kept in ' + args.results, file=sys.stderr)
        return 130
    print(format_table(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
