"""AugShift on the embedded default: make aug-shift-demo (one training seed) and make
tables-aug-shift (seeds 0, 1, 2 and the README's table, docs/tables/aug_shift.md).

The demo model trained several ways, same data, iterations and seed: plain; on shifted crop
pairs without the AugShift loss (shift-crops, the control); with an anti-aliased backbone
(blurpool: BlurPool before each subsampling, Zhang 2019, the defence the paper's Table 2
compares with); with AugShift at the fragment's weights (latent 1, dense 1); 100x / 10x
stronger (augshift-strong); the latent term alone at latent weight 1/10/100 (latent-only-N).
Then shift consistency (Cons.8 / Cons.16) and the position attack of each, and one table.
A step's output is kept when it records this run (a model: its checkpoint's config, seed and
data, tools/train.py --keep-finished; consistency: the checkpoint's hash and settings; the
attack: its own fingerprint, --resume), so a rerun only redoes what is missing or stale; a
model trained another way in the same work dir stops it, naming what differs.

    make aug-shift-demo                 plain shift-crops blurpool augshift augshift-strong
    SEED=1 make aug-shift-demo          another training seed (own work dirs)
    RUNS="latent-only-1 latent-only-10" make aug-shift-demo
    KEPT_ONLY=1 make aug-shift-demo     train nothing: measure and table the kept models
    JOBS=2 make tables-aug-shift        two seeds' chains side by side, each logging to
                                        work_dirs/aug_shift/seedN.out
    RUNS="plain blurpool" make tables-aug-shift   the table of a declared subset: it names
                                        the runs left out and where their last measurement
                                        stays (EARLIER)
    KEPT_ONLY=1 make tables-aug-shift   train nothing; the table names the runs and seeds
                                        still to train

make tables-aug-shift is long: 24 trainings on one thread each, the pair-trained ones about
12 min each: over 4 hours on this project's 2-core machine with JOBS=1 (on 2026-12-03 the
runs went as two JOBS=2 chains, 2 h 13 min, then the table took 3.6 min)."""
from __future__ import annotations

import contextlib
import json
import os
import os.path as osp

from parts_demo import data_options, env, one_thread, synthetic_data
from steps import FileText, PipelineError, Runner, Step, check_jobs

AUG_CONFIGS = {
    'plain': 'configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py',
    'shift-crops': 'configs/demo/deeplabv3_r18-tiny_shift-crops_synthetic-cityscapes.py',
    'blurpool': 'configs/demo/deeplabv3_r18-tiny_blurpool_synthetic-cityscapes.py',
    'augshift': 'configs/demo/deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py',
}
MAX_SHIFTS = ('8', '16')
NOT_KEPT = 3   # tools/train.py --keep-finished --no-train: no finished model to keep
RESUME_REFUSED = 2   # tools/attack.py --resume: kept results of another experiment
LEFT_OUT = 'left_out.txt'   # a seed's runs KEPT_ONLY=1 left out (no finished model)
EARLIER_TABLE = 'docs/tables/aug_shift_2026-12-03.md'
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


def kept_consistency(path: str, checkpoint: str, trials: str) -> bool:
    """Did ``path`` (consistency.json) measure ``checkpoint`` with the settings asked now?"""
    if not osp.isfile(path) or not osp.isfile(checkpoint):
        return False
    from posattack.utils.fileio import file_sha256
    with open(path, encoding='utf-8') as f:
        recorded = json.load(f)
    asked = dict(checkpoint_sha256=file_sha256(checkpoint), trials=int(trials),
                 max_shifts=[int(s) for s in MAX_SHIFTS], seed=0, regions=['paper'])
    return all(recorded.get(key) == value for key, value in asked.items())


def _consistency_step(runner, config, checkpoint, folder, data, trials, threads) -> Step:
    out = f'{folder}/consistency/consistency.json'

    def needed() -> bool:
        if runner.dry_run and not osp.isfile(checkpoint.path):
            return True
        if kept_consistency(out, checkpoint.resolve(), trials):
            runner.say(f'[aug-shift demo] kept: {folder}/consistency (this checkpoint, the '
                       'same settings)')
            return False
        if osp.isfile(out):
            runner.say(f'[aug-shift demo] {folder}/consistency measured another checkpoint or '
                       'settings: measuring again')
        return True
    return Step(['tools/consistency.py', config, checkpoint, '--max-shift', *MAX_SHIFTS,
                 '--trials', trials, '--work-dir', f'{folder}/consistency', '--cfg-options',
                 *data_options(data)], when=needed, env=threads)


def aug_shift_demo(runner: Runner) -> None:
    """One training seed's runs (SEED, RUNS, DATA, WORK, TRIALS, KEPT_ONLY) and its table."""
    names = env('RUNS', ' '.join(DEMO_RUNS)).split()
    configs = {name: run_config(name) for name in names}   # names first: a typo costs nothing
    data = env('DATA', 'data/synthetic_cityscapes')
    seed = env('SEED', '0')
    work = env('WORK', f'work_dirs/aug_shift/seed{seed}')
    trials = env('TRIALS', '3')
    kept_only = env('KEPT_ONLY', '0') != '0'
    threads = one_thread()
    synthetic_data(runner, data, extra=())
    left_out = osp.join(work, LEFT_OUT)   # this part's own list, rewritten each run
    if osp.exists(left_out) and not runner.dry_run:
        os.remove(left_out)
    rows = []
    for name, (config, weights) in configs.items():
        folder = f'{work}/{name}'
        checkpoint = FileText(f'{folder}/train/last_checkpoint')
        # A kept model is reused only if its checkpoint records this config, seed and data
        # (and finished); one trained another way stops the part with what differs.
        code = runner.run(Step(['tools/train.py', config, '--work-dir', f'{folder}/train',
                                '--keep-finished', *(['--no-train'] if kept_only else []),
                                '--cfg-options', *data_options(data), f'randomness.seed={seed}',
                                *weights], env=threads,
                               accept=(0, NOT_KEPT) if kept_only else (0,)))
        if code == NOT_KEPT:
            os.makedirs(work, exist_ok=True)
            with open(left_out, 'a', encoding='utf-8') as f:
                f.write(name + '\n')
            runner.say(f'[aug-shift demo] {name} (seed {seed}): no finished model kept: left '
                       'out (KEPT_ONLY=1)')
            continue
        runner.run(_consistency_step(runner, config, checkpoint, folder, data, trials, threads))
        # --resume keeps finished settings only of the same experiment (attack fingerprint);
        # results of another checkpoint or test protocol are refused (exit 2, saying why) and
        # attacked again from scratch, not reused.
        attack = ['tools/attack.py', config, checkpoint, '--work-dir', f'{folder}/attack',
                  '--no-overlays', '--cfg-options', *data_options(data)]
        if runner.run(Step(attack + ['--resume'], env=threads,
                           accept=(0, RESUME_REFUSED))) == RESUME_REFUSED:
            runner.say(f'[aug-shift demo] {folder}/attack: kept results refused (above): '
                       'attacking again')
            runner.run(Step(attack, env=threads))
        rows += ['--run', name, f'{folder}/consistency/consistency.json',
                 f'{folder}/attack/results.json']
    if not rows:
        runner.say('[aug-shift demo] no run kept (KEPT_ONLY=1): no table')
        return
    runner.run(Step(['tools/tables/aug_shift_table.py', *rows, '--out', f'{work}/table.md']))
    runner.say(f'[aug-shift demo] table: {work}/table.md')


def _left_out(seed: str) -> set:
    path = f'work_dirs/aug_shift/seed{seed}/{LEFT_OUT}'
    if not osp.isfile(path):
        return set()
    with open(path, encoding='utf-8') as f:
        return {line.strip() for line in f if line.strip()}


def tables_aug_shift(runner: Runner) -> None:
    """Every run for training seeds SEEDS (default 0 1 2), JOBS seeds' chains at a time, then
    one table per run and seed, its summary over seeds and the paired differences, at the
    paper's count (5% of the channels), where each model's primary rank test (sequential
    draws, up to 99) gives the verdict; at 10% the 8 exploratory draws cannot reach p < 0.05.
    RUNS: a declared subset (the table names the others and EARLIER, their last table);
    KEPT_ONLY=1: train nothing (the table names the runs and seeds still to train)."""
    seeds = env('SEEDS', '0 1 2').split()
    runner.jobs = check_jobs(env('JOBS', '1'))
    runs = env('RUNS', ' '.join(ALL_RUNS))
    kept_only = env('KEPT_ONLY', '0')
    for name in runs.split():
        run_config(name)
    note = '' if runs == ' '.join(ALL_RUNS) else f', RUNS="{runs}"'
    note += ', KEPT_ONLY=1' if kept_only != '0' else ''
    notes = []
    not_rerun = [name for name in ALL_RUNS if name not in runs.split()]
    if not_rerun:
        earlier = env('EARLIER', EARLIER_TABLE)
        notes += ['--not-rerun', *not_rerun] + (['--earlier', earlier]
                                                if osp.isfile(earlier) else [])
    if runner.dry_run:   # every seed's steps, as its chain would run them
        for seed in seeds:
            with environment(SEED=seed, RUNS=runs, KEPT_ONLY=kept_only):
                aug_shift_demo(runner)
    # a seed's chain is this pipeline's aug-shift-demo part in its own process, so JOBS > 1
    # runs chains side by side, each with its own log
    runner.batch('training seed', [
        Step(['tools/tables/pipeline.py', 'aug-shift-demo'],
             env={'SEED': seed, 'RUNS': runs, 'KEPT_ONLY': kept_only},
             log=f'work_dirs/aug_shift/seed{seed}.out', when=lambda: not runner.dry_run)
        for seed in seeds], names=seeds)
    rows, not_trained = [], []
    for seed in seeds:
        left_out = _left_out(seed)
        for name in runs.split():
            if name in left_out:   # KEPT_ONLY=1 and no finished model: not a row
                not_trained.append(f'{name}/{seed}')
                continue
            folder = f'work_dirs/aug_shift/seed{seed}/{name}'
            rows += ['--run', f'{name}/{seed}', f'{folder}/consistency/consistency.json',
                     f'{folder}/attack/results.json']
    if not_trained:
        notes += ['--not-trained', *not_trained]
    runner.run(Step(['tools/tables/aug_shift_table.py', *rows, *notes, '--fraction', '0.05',
                     '--out', 'docs/tables/aug_shift.md', '--command',
                     f'make tables-aug-shift (SEEDS="{" ".join(seeds)}"{note})']))
