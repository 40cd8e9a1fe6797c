"""AugShift on the embedded default: make aug-shift-demo (one training seed) and make
tables-aug-shift (seeds 0, 1, 2 and the README's table, docs/tables/aug_shift.md).

The demo model trained several ways, same data, iterations and seed: plain; on shifted crop
pairs without the AugShift loss (shift-crops, the control); with an anti-aliased backbone
(blurpool: BlurPool before each subsampling, Zhang 2019, the defence the paper's Table 2
compares with); with AugShift at the fragment's weights (latent 1, dense 1); 100x / 10x
stronger (augshift-strong); the latent term alone at latent weight 1/10/100 (latent-only-N).
Then shift consistency (Cons.8 / Cons.16) and the position attack of each, and one table.
Steps whose outputs exist are skipped.

    make aug-shift-demo                 plain shift-crops blurpool augshift augshift-strong
    SEED=1 make aug-shift-demo          another training seed (own work dirs)
    RUNS="latent-only-1 latent-only-10" make aug-shift-demo
    JOBS=2 make tables-aug-shift        two seeds' chains side by side, each logging to
                                        work_dirs/aug_shift/seedN.out

make tables-aug-shift is long: 24 trainings on one thread each, the pair-trained ones about
12 min each: over 4 hours on this project's 2-core machine with JOBS=1 (on 2026-12-03 the
runs went as two JOBS=2 chains, 2 h 13 min, then the table took 3.6 min)."""
from __future__ import annotations

import contextlib
import os

from parts_demo import data_options, env, one_thread, synthetic_data
from steps import FileText, PipelineError, Runner, Step, check_jobs

AUG_CONFIGS = {
    'plain': 'configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py',
    'shift-crops': 'configs/demo/deeplabv3_r18-tiny_shift-crops_synthetic-cityscapes.py',
    'blurpool': 'configs/demo/deeplabv3_r18-tiny_blurpool_synthetic-cityscapes.py',
    'augshift': 'configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py',
}
DEMO_RUNS = ['plain', 'shift-crops', 'blurpool', 'augshift', 'augshift-strong']
ALL_RUNS = DEMO_RUNS + ['latent-only-1', 'latent-only-10', 'latent-only-100']


def run_config(name: str) -> tuple[str, list[str]]:
    """(config, extra --cfg-options) of one named run; an unknown name is refused."""
    if name in AUG_CONFIGS:
        return AUG_CONFIGS[name], []
    if name == 'augshift-strong':
        return AUG_CONFIGS['augshift'], ['model.latent_weight=100.0', 'model.dense_weight=10.0']
    if name.startswith('latent-only-') and name[len('latent-only-'):].isdigit():
        return AUG_CONFIGS['augshift'], [f'model.latent_weight={name[12:]}.0',
                                         'model.dense_weight=0.0']
    raise PipelineError(f"unknown run '{name}'; choose from {' '.join(ALL_RUNS)}", 2)


@contextlib.contextmanager
def environment(**values):
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


def aug_shift_demo(runner: Runner) -> None:
    """One training seed's runs (SEED, RUNS, DATA, WORK, TRIALS) and its table."""
    names = env('RUNS', ' '.join(DEMO_RUNS)).split()
    configs = {name: run_config(name) for name in names}   # names first: a typo costs nothing
    data = env('DATA', 'data/synthetic_cityscapes')
    seed = env('SEED', '0')
    work = env('WORK', f'work_dirs/aug_shift/seed{seed}')
    trials = env('TRIALS', '3')
    threads = one_thread()
    synthetic_data(runner, data, extra=())
    rows = []
    for name, (config, weights) in configs.items():
        folder = f'{work}/{name}'
        checkpoint = FileText(f'{folder}/train/last_checkpoint')
        runner.run(Step(['tools/train.py', config, '--work-dir', f'{folder}/train',
                         '--cfg-options', *data_options(data), f'randomness.seed={seed}',
                         *weights], done=f'{folder}/train/last_checkpoint', env=threads))
        runner.run(Step(['tools/consistency.py', config, checkpoint, '--max-shift', '8', '16',
                         '--trials', trials, '--work-dir', f'{folder}/consistency',
                         '--cfg-options', *data_options(data)],
                        done=f'{folder}/consistency/consistency.json', env=threads))
        runner.run(Step(['tools/attack.py', config, checkpoint, '--work-dir', f'{folder}/attack',
                         '--resume', '--no-overlays', '--cfg-options', *data_options(data)],
                        env=threads))
        rows += ['--run', name, f'{folder}/consistency/consistency.json',
                 f'{folder}/attack/results.json']
    runner.run(Step(['tools/tables/aug_shift_table.py', *rows, '--out', f'{work}/table.md']))
    runner.say(f'[aug-shift demo] table: {work}/table.md')


def tables_aug_shift(runner: Runner) -> None:
    """Every run for training seeds SEEDS (default 0 1 2), JOBS seeds' chains at a time, then
    one table per run and seed, its summary over seeds and the paired differences."""
    seeds = env('SEEDS', '0 1 2').split()
    runner.jobs = check_jobs(env('JOBS', '1'))
    runs = env('RUNS', ' '.join(ALL_RUNS))
    for name in runs.split():
        run_config(name)
    note = '' if runs == ' '.join(ALL_RUNS) else f', RUNS="{runs}"'
    if runner.dry_run:   # every seed's steps, as its chain would run them
        for seed in seeds:
            with environment(SEED=seed, RUNS=runs):
                aug_shift_demo(runner)
    # a seed's chain is this pipeline's aug-shift-demo part in its own process, so JOBS > 1
    # runs chains side by side, each with its own log
    runner.batch('training seed', [
        Step(['tools/tables/pipeline.py', 'aug-shift-demo'], env={'SEED': seed, 'RUNS': runs},
             log=f'work_dirs/aug_shift/seed{seed}.out', when=lambda: not runner.dry_run)
        for seed in seeds], names=seeds)
    rows = []
    for seed in seeds:
        for name in runs.split():
            folder = f'work_dirs/aug_shift/seed{seed}/{name}'
            rows += ['--run', f'{name}/{seed}', f'{folder}/consistency/consistency.json',
                     f'{folder}/attack/results.json']
    runner.run(Step(['tools/tables/aug_shift_table.py', *rows, '--out',
                     'docs/tables/aug_shift.md', '--command',
                     f'make tables-aug-shift (SEEDS="{" ".join(seeds)}"{note})']))
