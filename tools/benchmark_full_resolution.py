"""The attack at Cityscapes' own scale, phase by phase: time per image and peak memory.

For each architecture (mmseg zoo configs from configs/paper, random weights, SyncBN as BN)
and each image count (default 1, 2, 4), one subprocess runs the attack's phases on synthetic
1024x2048 scenes with all 19 classes (tools/make_synthetic_cityscapes.py --all-classes) and
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

    python tools/benchmark_full_resolution.py --arch deeplabv3_r50 --images 1 2 4
    python tools/benchmark_full_resolution.py --table-only     # the table from kept results
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

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)

PAPER = osp.join(REPO_ROOT, 'configs', 'paper')
ARCHITECTURES = {
    'deeplabv3_r50': dict(config='deeplabv3_r50-d8_cityscapes-512x1024_posattack.py',
                          label='DeepLabv3-R50-D8 (whole)', options={}),
    'pspnet_r50': dict(config='pspnet_r50-d8_cityscapes-512x1024_posattack.py',
                       label='PSPNet-R50-D8 (whole)', options={}),
    'segformer_b0_whole': dict(config='segformer_mit-b0_cityscapes-1024x1024_posattack.py',
                               label='SegFormer-B0 (whole)', options={}),
    'segformer_b0_slide': dict(config='segformer_mit-b0_cityscapes-1024x1024_posattack.py',
                               label='SegFormer-B0 (slide)',
                               options={'model.test_cfg.mode': 'slide'}),
}
PHASES = ('build', 'identification', 'clean pass', 'targeted (per setting)',
          'random (per setting)', 'statistics', 'report', 'overlays')
SIZE = (1024, 2048)
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


# ----------------------------------------------------------------------------- the worker
class _Phases:
    """Wall and CPU seconds per phase, in this process."""

    def __init__(self):
        self.seconds = {}

    def run(self, name, function, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(*args, **kwargs)
        self.seconds[name] = dict(wall=time.perf_counter() - wall,
                                  cpu=time.process_time() - cpu)
        return result


def _rss_mb() -> float:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def worker(arch: str, num_images: int, data_root: str, per_kind: int, out_dir: str,
           size=SIZE) -> dict:
    import torch

    from posattack.attack.feature_split import FeatureSplit
    from posattack.attack.run_progress import RunProgress
    from posattack.attack.settings import AttackSetting
    from posattack.attack.sweep import run_sweep
    from posattack.channels.layers import default_layer, resolve_layer
    from posattack.data.dataloader import build_test_dataloader
    from posattack.evaluation.metric import summarize_confusion
    from posattack.evaluation.regions import validate_region_specs
    from posattack.identify import identify_channels
    from posattack.models.builder import load_segmentor
    from posattack.report.markdown import write_report
    from posattack.report.overlay import render_panel, save_panel
    from posattack.report.significance import build_statistics
    spec = ARCHITECTURES[arch]
    options = dict(spec['options'], **{
        'test_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.pipeline.1.scale': (size[1], size[0]),
        'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False})
    phases = _Phases()
    torch.manual_seed(0)
    model, cfg = phases.run('build', load_segmentor, osp.join(PAPER, spec['config']), None,
                            cfg_options=options)
    rss_built = _rss_mb()
    layer = default_layer(model)
    split = FeatureSplit(model, resolve_layer(model, layer))
    loader = build_test_dataloader(cfg, 1, num_images)
    class_names = list(model.dataset_meta['classes'])
    regions = ['paper', dict(type='border', bands=4)]
    ranking = phases.run('identification', identify_channels, model, loader, layer,
                         progress=False)
    num_total = ranking.num_channels
    clean = AttackSetting('clean')
    counts = [max(1, round(f * num_total)) for f in (0.05, 0.1)]
    kinds = {
        'targeted (per setting)': [AttackSetting('targeted', counts[i % 2],
                                                 attack_region='overall')
                                   for i in range(per_kind)],
        'random (per setting)': [AttackSetting('random', counts[0], seed=seed)
                                 for seed in range(per_kind)]}

    estimates = []   # (the first batch's projection, the measured wall time) per sweep

    def sweep(settings):
        tracker = RunProgress(num_images, enabled=False)
        start = time.perf_counter()
        state = run_sweep(split, loader, settings, num_total, regions, len(class_names),
                          ranking=ranking, progress=tracker)
        estimates.append((tracker.estimate_s, time.perf_counter() - start))
        return state

    state = phases.run('clean pass', sweep, [clean])
    confusions, per_image = dict(state.confusions), state.per_image
    for name, settings in kinds.items():
        kind_state = phases.run(name, sweep, [clean] + settings)
        for clock in ('wall', 'cpu'):  # one more setting: minus the clean pass, per setting
            phases.seconds[name][clock] = (phases.seconds[name][clock]
                                           - phases.seconds['clean pass'][clock]) / len(settings)
        confusions.update(kind_state.confusions)
        per_image = kind_state.per_image.merged(per_image)
    all_settings = [clean] + [s for settings in kinds.values() for s in settings]
    region_names = validate_region_specs(regions)
    results = dict(config=spec['config'], checkpoint='random init', layer=layer,
                   num_images=num_images, num_channels_total=num_total,
                   class_names=class_names, regions=region_names, settings=[])
    for setting in all_settings:
        flat, per_class = summarize_confusion(confusions[setting.key], region_names,
                                              class_names)
        results['settings'].append(dict(setting.to_dict(), key=setting.key, metrics=flat,
                                         per_class=per_class))
    results['statistics'], results['tests'] = phases.run(
        'statistics', build_statistics, results['settings'], per_image,
        num_channels_total=num_total)
    phases.run('report', write_report, osp.join(out_dir, 'report'), results)

    def predictions():
        """What the sweep hands the overlay writer: per image, three settings' labels."""
        shown = [clean, kinds['targeted (per setting)'][0], kinds['random (per setting)'][0]]
        panels = []
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            with torch.no_grad():
                feats = split.prefix(inputs) if split.fast else None
                preds = {}
                for setting, channels in zip(shown, [[], ranking.top('overall', counts[0]),
                                                     list(range(counts[0]))]):
                    labels = split.predict_from(feats, inputs, samples, channels) \
                        if split.fast else split.predict_full(inputs, samples, channels)
                    preds[setting.label] = labels[0].cpu().numpy()
            panels.append((samples[0].img_path, samples[0].gt_sem_seg.data[0].cpu().numpy(),
                           preds))
        return panels

    def overlays(panels):
        """What tools/attack.py does with them: read the image, render, write the panel."""
        import mmcv
        palette = model.dataset_meta['palette']
        for img_path, gt, preds in panels:
            image = mmcv.imread(img_path, channel_order='rgb')
            width = gt.shape[1]
            panel = render_panel(image, gt, preds, palette,
                                 periphery=(width // 4, 3 * width // 4),
                                 tile_width=min(width, 512))
            save_panel(osp.join(out_dir, osp.basename(img_path)), panel)

    # the labels come from the sweep in a real run (not timed here); rendering is
    phases.run('overlays', overlays, predictions())
    # ru_maxrss is in kilobytes on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(arch=arch, images=num_images, fast_path=split.fast, channels=num_total,
                settings_per_kind=per_kind, size=list(size), overlay_phase='render',
                rss_built_mb=rss_built,
                peak_rss_mb=peak,
                seconds=phases.seconds, threads=torch.get_num_threads(), estimates=estimates,
                load_average=os.getloadavg())


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


def _cell(result, phase) -> str:
    seconds = result['seconds'][phase]
    per = 1 if phase in ('build', 'statistics', 'report') else result['images']
    return f"{seconds['wall'] / per:.1f} / {seconds['cpu'] / per:.1f}"


def format_table(args) -> str:
    lines = [f'{args.size[0]}x{args.size[1]} synthetic scenes. Wall / CPU seconds per image '
             '(build, statistics and report: per run, they do not grow with images);',
             'targeted and random: one more setting, per image. Peak RSS in MB (getrusage). '
             'Random weights.', '']
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
    lines.append(f'Settings timed per kind: {args.settings_per_kind}; torch threads: '
                 f'{args.threads}; estimate off by: the first batch\'s projection of each sweep '
                 'against its measured wall time, worst factor either way (from 2 images on; '
                 'with one image the first batch is the sweep); load avg: the machine\'s '
                 '1-minute load when the run ended (other jobs share the cores).')
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
