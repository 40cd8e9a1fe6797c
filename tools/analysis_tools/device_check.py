"""Settings batched through the head, checked on a device: the path a GPU run takes.

The suite runs on CPUs; this script runs the same code on the device a run would use (CUDA
by default) for the zoo architectures of the full-resolution benchmark, random weights, on
synthetic Cityscapes scenes, and prints one row per architecture:

* k:          settings per head forward, chosen from the device's free memory
              (posattack.attack.batched_settings.settings_per_pass);
* batched = one at a time: the labels of every setting, batched k per forward, against
              ``FeatureSplit.predict_from`` one setting at a time on the same device
              (exact: the check fails on one differing pixel);
* sweep k = 1: ``run_sweep``'s confusion matrices with k from memory against k = 1 (exact);
* CPU agreement: the share of pixels whose label on the device equals the label of the same
              weights on the CPU, over every setting (GPU kernels round differently, e.g.
              TF32 convolutions, so this is a figure, not a check);
* time:       one at a time against batched, best of --repeat, device synchronised;
* peak:       the device's peak allocated memory (CUDA), or the process's peak RSS (CPU).

Exit status 0 when every exact check passes, 1 when one fails, 2 on bad input.

    python tools/analysis_tools/device_check.py                          # CUDA, 256x512
    python tools/analysis_tools/device_check.py --size 1024 2048         # Cityscapes' size
    python tools/analysis_tools/device_check.py --device cpu --size 64 128  # the script itself
"""
from __future__ import annotations

import argparse
import copy
import os.path as osp
import resource
import sys
import tempfile
import time

import numpy as np
import torch
# The architectures: the full-resolution benchmark's, beside this file (a script's folder
# is first on sys.path). SegFormer's sliding window has no fast path, so nothing to batch.
from full_resolution_worker import ARCHITECTURES, PAPER

FAST_PATH_ARCHITECTURES = [name for name in ARCHITECTURES if name != 'segformer_b0_slide']
FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.2)  # one random removal each (seeds 0..4), after clean


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--device', default='cuda', help='cuda, cuda:N or cpu')
    parser.add_argument('--arch', nargs='+', choices=FAST_PATH_ARCHITECTURES,
                        default=FAST_PATH_ARCHITECTURES)
    parser.add_argument('--size', type=int, nargs=2, default=(256, 512), metavar=('H', 'W'))
    parser.add_argument('--images', type=int, default=2, help='images per batch')
    parser.add_argument('--repeat', type=int, default=3, help='timing rounds (best counts)')
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeat < 1 or min(args.size) < 32:
        parser.error('--images and --repeat must be at least 1, --size at least 32 32')
    return args


def check_device(name: str) -> torch.device:
    """The device, or a one-line error naming what is missing and the fix."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f'--device {name!r} is not a device ({error}); use cuda, cuda:N or '
                         'cpu.') from error
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError('no CUDA device here: run this on a GPU machine, or pass '
                             '--device cpu to check the script itself.')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f'--device {name}: only {torch.cuda.device_count()} CUDA '
                             'device(s) here.')
    elif device.type != 'cpu':
        raise ValueError(f'--device {name}: this check knows cuda and cpu.')
    return device


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _best_time(function, device: torch.device, repeat: int):
    best, result = float('inf'), None
    for _ in range(repeat):
        _synchronize(device)
        start = time.perf_counter()
        result = function()
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def _same(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y)) for x, y in zip(a, b))


def _agreement(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> float:
    equal = total = 0
    for x, y in zip(a, b):
        for p, q in zip(x, y):
            equal += int((p.cpu() == q.cpu()).sum())
            total += p.numel()
    return equal / total


def check_architecture(arch: str, device: torch.device, data_root: str, args) -> dict:
    from posattack.attack.batched_settings import BatchedSettings, Removal
    from posattack.attack.feature_split import FeatureSplit
    from posattack.attack.settings import AttackSetting
    from posattack.attack.sweep import run_sweep
    from posattack.channels import select_channels
    from posattack.channels.layers import default_layer, resolve_layer
    from posattack.data.dataloader import build_test_dataloader
    from posattack.models.builder import load_segmentor
    spec = ARCHITECTURES[arch]
    options = dict(spec['options'], **{
        'test_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.pipeline.1.scale': (args.size[1], args.size[0]),
        'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False})
    torch.manual_seed(0)
    model, cfg = load_segmentor(osp.join(PAPER, spec['config']), None, cfg_options=options)
    on_cpu = copy.deepcopy(model)  # the same random weights, for the agreement figure
    model.to(device)
    loader = build_test_dataloader(cfg, args.images, args.images)
    layer = default_layer(model)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)

    split = FeatureSplit(model, resolve_layer(model, layer))
    with torch.no_grad():
        first = model.data_preprocessor(next(iter(loader)), False)
        num_total = split.attacked(split.prefix(first['inputs'])).shape[1]
    counts = [max(1, round(f * num_total)) for f in FRACTIONS]  # random draw i: seed i
    removals = [Removal([])] + [Removal(select_channels('random', num_total, num_channels=n,
                                                        seed=seed))
                                for seed, n in enumerate(counts)]
    settings = [AttackSetting('clean')] + [AttackSetting('random', n, seed=seed)
                                           for seed, n in enumerate(counts)]

    def labels_of(segmentor, batched: bool):
        """Every removal's labels of the first batch; the backbone pass is timed too."""
        segmentor_split = FeatureSplit(segmentor, resolve_layer(segmentor, layer))
        data = segmentor.data_preprocessor(next(iter(loader)), False)
        inputs, samples = data['inputs'], data['data_samples']
        with torch.no_grad():
            feats = segmentor_split.prefix(inputs)
            if batched:
                batcher = BatchedSettings(segmentor_split)
                return batcher.predict_many(feats, inputs, samples, removals), batcher.per_pass
            return [segmentor_split.predict_from(feats, inputs, samples, *r)
                    for r in removals], 1

    one_s, (one, _) = _best_time(lambda: labels_of(model, False), device, args.repeat)
    batched_s, (batched, k) = _best_time(lambda: labels_of(model, True), device, args.repeat)
    reference, _ = labels_of(on_cpu, False)

    num_classes = len(model.dataset_meta['classes'])
    states = [run_sweep(split, loader, settings, num_total, ['paper'], num_classes,
                        progress=False, settings_per_pass=per_pass) for per_pass in (1, None)]
    sweep_same = set(states[0].confusions) == set(states[1].confusions) and all(
        np.array_equal(states[0].confusions[key], states[1].confusions[key])
        for key in states[0].confusions)
    if device.type == 'cuda':
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # ru_maxrss is in kilobytes on Linux
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(arch=arch, label=spec['label'], k=k, settings=len(one), exact=_same(batched, one),
                sweep_same=sweep_same, cpu_agreement=_agreement(one, reference),
                differ_from_clean=sum(not _same([s], [one[0]]) for s in one[1:]),
                one_s=one_s, batched_s=batched_s, peak_mb=peak_mb)


def format_rows(rows: list[dict], device: torch.device, args) -> str:
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    lines = [f'device: {device} ({name}); {args.images} images of {args.size[0]}x{args.size[1]}; '
             f'random weights; time: best of {args.repeat}, one batch through the backbone '
             'and every setting', '',
             '| architecture | k | settings | batched = one at a time | sweep k = 1 | '
             'CPU agreement | one at a time s | batched s | batched / one | peak MB |',
             '|' + '---|' * 10]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['k']} | {r['settings']} ({r['differ_from_clean']} differ from "
            f"clean) | {'yes' if r['exact'] else 'NO'} | {'yes' if r['sweep_same'] else 'NO'} | "
            f"{r['cpu_agreement']:.4%} | {r['one_s']:.3f} | {r['batched_s']:.3f} | "
            f"{r['batched_s'] / r['one_s']:.3f} | {r['peak_mb']:.0f} |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        device = check_device(args.device)
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    from mmengine.logging import MMLogger
    MMLogger.get_instance('posattack', log_level='WARNING')
    from posattack.data.synthetic import generate_cityscapes
    with tempfile.TemporaryDirectory(prefix='posattack_device_check_') as root:
        generate_cityscapes(root, num_train=0, num_val=args.images, size=tuple(args.size),
                            seed=0, all_classes=True)
        rows = [check_architecture(arch, device, root, args) for arch in args.arch]
    print(format_rows(rows, device, args))
    failed = [r['label'] for r in rows if not (r['exact'] and r['sweep_same'])]
    if failed:
        print(f'FAILED: batched settings differ from one at a time on {", ".join(failed)}')
        return 1
    print('every exact check passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
