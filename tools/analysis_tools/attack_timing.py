"""The measurements behind tools/analysis_tools/benchmark_attack.py: the benchmark models,
the timed paths of the sweep (full forward, exact fast path, linear shortcut), the cost of
random draws, and peak memory of the sweep in a process of its own."""
from __future__ import annotations

import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

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


# The command line that runs one memory measurement in its own process.
BENCHMARK_TOOL = osp.join(osp.dirname(osp.abspath(__file__)), 'benchmark_attack.py')


def data_options(model_name: str, data_root: str, size=None) -> dict:
    """Config overrides: the data folder and a test Resize to the benchmark's input size (or
    ``size``, (h, w))."""
    height, width = size or BENCHMARK_MODELS[model_name]['size']
    return {'test_dataloader.dataset.data_root': data_root,
            'test_dataloader.dataset.pipeline.1.scale': (width, height),
            'test_dataloader.num_workers': 0,
            'test_dataloader.persistent_workers': False}


def build_model(model_name: str, data_root: str, size=None):
    """(model, cfg) with random weights, eval mode, CPU (SyncBN becomes BN)."""
    from posattack.models.builder import load_segmentor
    torch.manual_seed(0)
    model, cfg = load_segmentor(BENCHMARK_MODELS[model_name]['config'], None,
                                cfg_options=data_options(model_name, data_root, size))
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
    command = [sys.executable, BENCHMARK_TOOL, '--memory-worker', '--model', model_name,
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


def benchmark_model(model_name: str, data_root: str, args) -> dict:
    model, cfg = build_model(model_name, data_root)
    from batched_timing import time_batched_settings  # it imports this module's set-up
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
