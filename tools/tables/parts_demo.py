"""The demo's parts: make demo, make demo-seeds (tables-seeds), make demo-profile
(tables-profile), tables-demo and tables-placebo. Each step is skipped when its output is
there (an attack resumes and finds nothing left), so a rerun only does what is missing.

Settings come from the environment, as the make targets pass them (``SEEDS=3 make
demo-seeds``): DATA, WORK, SEEDS, JOBS (see each part's docstring)."""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import time
from dataclasses import dataclass, field, replace

from steps import Computed, Elapsed, FileText, Runner, Step, check_jobs

DEMO_CONFIG = 'configs/demo/deeplabv3_r18-tiny_flip_side-free_synthetic-cityscapes.py'
SIDE_FREE_DATA = 'data/synthetic_cityscapes_side_free'
SEED0_TRAIN = 'work_dirs/demo/seeds/seed0/train'


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def one_thread() -> dict:
    """One torch thread unless OMP_NUM_THREADS says otherwise: on a CPU the trained weights
    depend on how many threads summed them, so this is what makes `make demo` and seed 0 of
    `make demo-seeds` one model (bit-identical weights on one machine)."""
    return {'OMP_NUM_THREADS': env('OMP_NUM_THREADS', '1')}


def data_options(data: str, splits=('train', 'val', 'test')) -> list[str]:
    return [f'{split}_dataloader.dataset.data_root={data}' for split in splits]


# The generator's own record of a data set (posattack.data.cityscapes_layout.MARKER_FILE; named
# here so that the pipeline starts without importing torch): its "complete" flag is the one way
# a finished data set is known.
SYNTHETIC_MARKER = '.posattack_synthetic.json'


def synthetic_complete(data: str) -> bool:
    try:
        with open(osp.join(data, SYNTHETIC_MARKER), encoding='utf-8') as f:
            return json.load(f).get('complete') is True
    except (OSError, ValueError, AttributeError):
        return False


def synthetic_data(runner: Runner, data: str, num_val: int = 60, seed: int = 0,
                   extra=('--side-free', ), num_train: int = 300, size=(128, 256)) -> None:
    """``num_train`` train + ``num_val`` val synthetic scenes (skipped when complete)."""
    runner.run(Step(['tools/dataset_converters/make_synthetic_cityscapes.py', data,
                     '--num-train', str(num_train), '--num-val', str(num_val), '--size',
                     *map(str, size), '--seed', str(seed), *extra],
                    when=lambda: not synthetic_complete(data)))


def demo(runner: Runner, data: str = '', work: str = '') -> None:
    """make demo: synthetic side-free data, the tiny DeepLabv3 trained with random flips as
    mmseg trains its Cityscapes models, then the position attack (DATA, WORK)."""
    data = data or env('DATA', SIDE_FREE_DATA)
    work = work or env('WORK', 'work_dirs/demo')
    threads = one_thread()
    synthetic_data(runner, data)
    runner.run(Step(['tools/train.py', DEMO_CONFIG, '--work-dir', f'{work}/train',
                     '--cfg-options', *data_options(data)],
                    done=f'{work}/train/last_checkpoint', env=threads))
    runner.run(Step(['tools/attack.py', DEMO_CONFIG, FileText(f'{work}/train/last_checkpoint'),
                     '--work-dir', f'{work}/attack', '--resume', '--show-dir',
                     f'{work}/attack/overlays', '--cfg-options', *data_options(data)],
                    env=threads))
    runner.say(f'[demo] report: {work}/attack/report.md')


@dataclass
class SeedsRun:
    """One pooled run over training seeds; the study fills every field (tools/tables/
    parts_study.py), make demo-seeds only the environment's."""

    config: str = DEMO_CONFIG
    data: str = SIDE_FREE_DATA
    data_seed: int = 0
    num_val: int = 60
    generator_options: list = field(default_factory=lambda: ['--side-free'])
    train_options: list = field(default_factory=list)
    seeds: int = 5
    work: str = 'work_dirs/demo/seeds'
    train_work: str = ''
    table: str = 'docs/tables/demo_pooled.md'
    refresh_readme: bool = True
    command: str = ''

    @classmethod
    def from_env(cls) -> 'SeedsRun':
        seeds = int(env('SEEDS', '5'))
        return cls(data=env('DATA', SIDE_FREE_DATA), seeds=seeds,
                   work=env('WORK', 'work_dirs/demo/seeds'),
                   table=env('TABLE', 'docs/tables/demo_pooled.md'),
                   refresh_readme=env('README', '1') == '1',
                   command=env('COMMAND', f'SEEDS={seeds} make demo-seeds'))


def demo_seeds(runner: Runner, run: SeedsRun) -> None:
    """make demo-seeds: the demo model trained with seeds 0..SEEDS-1 (JOBS side by side, one
    thread each), all attacked as one pooled run, the across-model tests and the paper's two
    claims; writes WORK/pooled/ and the table (docs/tables/demo_pooled.md), stamped."""
    runner.jobs = check_jobs(env('JOBS', '1'))
    start = time.time()
    train_work = run.train_work or run.work
    threads = one_thread()
    synthetic_data(runner, run.data, run.num_val, run.data_seed, run.generator_options)
    runner.batch('training seed', [
        Step(['tools/train.py', run.config, '--work-dir', f'{train_work}/seed{seed}/train',
              '--cfg-options', *data_options(run.data), f'randomness.seed={seed}',
              *run.train_options],
             done=f'{train_work}/seed{seed}/train/last_checkpoint',
             log=f'{train_work}/seed{seed}/train.out', env=threads)
        for seed in range(run.seeds)], names=range(run.seeds))
    checkpoints = [FileText(f'{train_work}/seed{seed}/train/last_checkpoint')
                   for seed in range(run.seeds)]
    runner.run(Step(['tools/attack.py', run.config, *checkpoints, '--model-names',
                     *[f'seed{seed}' for seed in range(run.seeds)], '--work-dir',
                     f'{run.work}/pooled', '--resume', '--no-overlays', '--cfg-options',
                     *data_options(run.data)], env=threads))
    runner.run(Step(['tools/tables/pooled_table.py', f'{run.work}/pooled/summary.json',
                     '--out', run.table, '--command', run.command, '--seconds',
                     Elapsed(start)]))
    runner.say(f'[demo-seeds] pooled report: {run.work}/pooled/report.md; table: {run.table}')
    if run.refresh_readme:
        runner.run(Step(['tools/tables/include_tables.py', 'README.md',
                         'docs/embedded_default.md']))


def demo_profile(runner: Runner) -> None:
    """make demo-profile: the depth profile of make demo-seeds' seed 0 (trained first when
    missing) and docs/tables/demo_profile.md with its plots, stamped (DATA, WORK)."""
    data = env('DATA', SIDE_FREE_DATA)
    work = env('WORK', 'work_dirs/demo/profile')
    if not osp.isfile(f'{SEED0_TRAIN}/last_checkpoint'):
        demo_seeds(runner, replace(SeedsRun.from_env(), seeds=1, work='work_dirs/demo/seeds',
                                   command='SEEDS=1 make demo-seeds'))
    checkpoint = Computed(
        lambda: osp.relpath(FileText(f'{SEED0_TRAIN}/last_checkpoint').resolve()),
        f'$(cat {SEED0_TRAIN}/last_checkpoint)')
    options = f'test_dataloader.dataset.data_root={data}'
    command = Computed(lambda: f'python tools/depth_profile.py {DEMO_CONFIG} '
                       f'{checkpoint.resolve()} --work-dir {work} --cfg-options {options}',
                       f'python tools/depth_profile.py {DEMO_CONFIG} CHECKPOINT ...')
    start = time.time()
    runner.run(Step(['tools/depth_profile.py', DEMO_CONFIG, checkpoint, '--work-dir', work,
                     '--resume', '--cfg-options', options]))
    runner.run(Step(['tools/tables/profile_table.py', f'{work}/profile.json', '--out',
                     'docs/tables/demo_profile.md', '--command', command, '--seconds',
                     Elapsed(start)]))
    runner.say('[demo-profile] table: docs/tables/demo_profile.md')


def tables_demo(runner: Runner) -> None:
    """make demo measured from nothing in work_dirs/tables/demo (its own data, training and
    attack), timed: docs/tables/demo_run.md. Skipped when that run is complete (delete
    work_dirs/tables/demo to measure again). Torch uses one thread, as in make demo."""
    work = 'work_dirs/tables/demo'
    if osp.isfile(f'{work}/attack/results.json'):
        runner.say(f'[tables-demo] {work}/attack/results.json exists: skipped')
        return
    if runner.dry_run:
        runner.say(f'[dry-run] remove {work} (the pipeline\'s own work dir), then:')
    elif osp.isdir(work):
        shutil.rmtree(work)
    start = time.time()
    demo(runner, data=f'{work}/data', work=work)
    runner.run(Step(['tools/tables/pooled_table.py', f'{work}/attack/results.json', '--name',
                     'make demo', '--out', 'docs/tables/demo_run.md', '--seconds',
                     Elapsed(start), '--command',
                     'make demo (data, training and attack from nothing; set-up done)']))


# The placebo runs: make demo-seeds' models and, once make tables-study trained it, seed 0 of
# the default on data seed 1 (other scenes: a model and data not in the repository's tables).
PLACEBO_RUNS = [('work_dirs/demo/seeds', SIDE_FREE_DATA, 'demo'),
                ('work_dirs/study/flip_side_free/data1', f'{SIDE_FREE_DATA}_d1', 'data1')]
PLACEBO_DRAWS = 120


def tables_readout(runner: Runner) -> None:
    """make tables-readout: the position read-out of make demo-seeds' seed 0 (trained first
    when missing) per layer and padding: docs/tables/demo_readout.md and its plot, included in
    docs/position_readout.md. The tool resumes from its work dir."""
    if not osp.isfile(f'{SEED0_TRAIN}/iter_600.pth'):
        demo_seeds(runner, replace(SeedsRun.from_env(), seeds=1, work='work_dirs/demo/seeds',
                                   command='SEEDS=1 make demo-seeds', refresh_readme=False))
    runner.run(Step(['tools/tables/readout_table.py']))
    runner.run(Step(['tools/tables/include_tables.py', 'docs/position_readout.md']))


def tables_placebo(runner: Runner) -> None:
    """The calibration of the verdict tests: 120 random draws at the primary count (5%, N=6 of
    128), each draw tested as if it were the targeted set; the rank tests must call at most
    5% of these placebos "holds" (docs/tables/placebo_demo.md)."""
    if not osp.isfile(f'{SEED0_TRAIN}/last_checkpoint'):
        demo_seeds(runner, replace(SeedsRun.from_env(), seeds=1, work='work_dirs/demo/seeds',
                                   command='SEEDS=1 make demo-seeds', refresh_readme=False))
    start = time.time()
    works = []
    for train, data, name in PLACEBO_RUNS:
        checkpoint = f'{train}/seed0/train/last_checkpoint'
        if not osp.isfile(checkpoint) and not (runner.dry_run and name == 'demo'):
            runner.say(f'[placebo] {checkpoint} missing: {name} skipped')
            continue
        work = f'work_dirs/tables/placebo/{name}'
        runner.run(Step(['tools/attack.py', DEMO_CONFIG, FileText(checkpoint), '--work-dir',
                         work, '--resume', '--fractions', '0.05', '--max-draws',
                         str(PLACEBO_DRAWS), '--exceedances', str(PLACEBO_DRAWS + 1),
                         '--no-overlays', '--cfg-options',
                         *data_options(data, ('train', 'test'))], env=one_thread()))
        works.append(work)
    runner.run(Step(['tools/tables/placebo_table.py', *works, '--out',
                     'docs/tables/placebo_demo.md', '--command', Elapsed(
                         start, 'make tables-placebo ({} s for this invocation; finished '
                         'attacks are kept)')]))
