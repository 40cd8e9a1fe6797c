"""The batched-settings measurement of tools/analysis_tools/benchmark_attack.py: the whole
sweep with one setting per head forward against settings batched through the head."""
from __future__ import annotations

import time

import numpy as np
# The benchmark's set-up: attack_timing.py beside this file (a script's folder is first on
# sys.path).
from attack_timing import MEMORY_REGIONS, attacked_channels, build_loader, make_settings


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
