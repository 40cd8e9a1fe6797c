"""The demo runs and the measured tables of README.md and docs/, as one declared plan.

    python tools/tables/pipeline.py PART [SETTING ...] [--dry-run]
    python tools/tables/pipeline.py --list
    make demo | demo-seeds | demo-profile | aug-shift-demo     (the same, through make)
    make tables | tables-<part>  [DRY_RUN=1]

Each part runs tools one after another from the repository root and skips a step whose
output is already there (a finished training, a complete data set, an attack that
resumes and finds nothing left), so a stopped part reruns cheaply. Every table is stamped
with date, machine, command and time (tools/tables/*_table.py). ``--dry-run`` prints the
commands a part would run (``[done]`` for those whose output exists) and runs nothing.
Settings come from the environment, as the make targets pass them (SEEDS, JOBS, DATA, WORK,
SEED, RUNS, TRIALS, DATA_SEEDS, PARTS, FULL_ITERS, DEMO_CKPT; each part's docstring in
tools/tables/parts_*.py says which it reads); POSATTACK_VENV names the virtual environment
whose python runs the tools (default: the one running this).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from collections.abc import Sequence
from dataclasses import dataclass

# The parts beside this file import as top-level modules: Python puts a script's folder first
# on sys.path.
from parts_aug_shift import aug_shift_demo, tables_aug_shift
from parts_demo import (SeedsRun, demo, demo_profile, demo_seeds, tables_demo, tables_placebo,
                        tables_readout)
from parts_probes_speed import tables_full_resolution, tables_probes, tables_speed
from parts_study import tables_study
from steps import REPO_ROOT, PipelineError, Runner, Step

# Every measured table, in the order `make tables` runs them (tables-speed needs
# tables-demo's model; tables-placebo and tables-profile make demo-seeds' seed 0).
TABLE_PARTS = ['tables-demo', 'tables-seeds', 'tables-study', 'tables-placebo',
               'tables-profile', 'tables-probes', 'tables-aug-shift', 'tables-speed',
               'tables-readout', 'tables-full-resolution']


def _all_tables(runner: Runner, settings: list[str]) -> None:
    for part in TABLE_PARTS:
        runner.say(f'[tables] {part}')
        PARTS[part].run(runner, [])
    docs = sorted(osp.join('docs', name) for name in os.listdir('docs') if name.endswith('.md'))
    runner.run(Step(['tools/tables/include_tables.py', 'README.md', *docs]))


@dataclass
class Part:
    """One make target: what it does, and the function that runs (or lists) its steps."""

    summary: str
    function: object
    takes_settings: bool = False

    def run(self, runner: Runner, settings: list[str]) -> None:
        if self.takes_settings:
            self.function(runner, settings)
        else:
            self.function(runner)


PARTS = {
    'demo': Part('the main job on the embedded default: data, training, attack', demo),
    'demo-seeds': Part('the demo over SEEDS training seeds, pooled tests and claims',
                       lambda runner: demo_seeds(runner, SeedsRun.from_env())),
    'demo-profile': Part('the depth profile of the demo model', demo_profile),
    'aug-shift-demo': Part('AugShift against plain, shift-crops and BlurPool training',
                           aug_shift_demo),
    'tables-demo': Part('make demo from nothing, timed: docs/tables/demo_run.md', tables_demo),
    'tables-seeds': Part('= demo-seeds: docs/tables/demo_pooled.md',
                         lambda runner: demo_seeds(runner, SeedsRun.from_env())),
    'tables-study': Part('the seed-robustness study: docs/tables/study.md', tables_study,
                         takes_settings=True),
    'tables-placebo': Part('the verdict tests on placebos: docs/tables/placebo_demo.md',
                           tables_placebo),
    'tables-profile': Part('= demo-profile: docs/tables/demo_profile.md', demo_profile),
    'tables-probes': Part("Islam et al.'s Table 1 and the protocol runs: docs/tables/probes_*",
                          tables_probes),
    'tables-aug-shift': Part('AugShift over seeds 0-2: docs/tables/aug_shift.md',
                             tables_aug_shift),
    'tables-speed': Part('the benchmarks the docs quote: docs/tables/speed_*.md', tables_speed),
    'tables-readout': Part('the position read-out per layer and padding: '
                           'docs/tables/demo_readout.md', tables_readout),
    'tables-full-resolution': Part('the attack at 1024x2048, phase by phase, and the '
                                   "paper's experiment projected (hours)",
                                   tables_full_resolution),
    'tables': Part('every table part above, then the include blocks of README.md and docs/',
                   _all_tables, takes_settings=True),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawTextHelpFormatter,
        epilog='parts:\n' + '\n'.join(f'  {name:17s} {part.summary}'
                                      for name, part in PARTS.items()))
    parser.add_argument('part', nargs='?', help='the part to run (see below)')
    parser.add_argument('settings', nargs='*',
                        help='tables-study only: the settings to run (default: the study plan)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands the part would run; run nothing')
    parser.add_argument('--list', action='store_true', help='print the parts and exit')
    return parser.parse_args(argv)


def _python() -> str:
    venv = os.environ.get('POSATTACK_VENV')
    return osp.join(venv, 'bin', 'python') if venv else sys.executable


def main(argv: Sequence[str] = None) -> int:
    args = parse_args(argv)
    if args.list or not args.part:
        for name, part in PARTS.items():
            print(f'{name:17s} {part.summary}')
        return 0 if args.list else 2
    if args.part not in PARTS:
        print(f"error: unknown part '{args.part}'; choose from: {' '.join(PARTS)}",
              file=sys.stderr)
        return 2
    part = PARTS[args.part]
    if args.settings and not part.takes_settings:
        print(f'error: {args.part} takes no settings (got {" ".join(args.settings)}); only '
              'tables-study does', file=sys.stderr)
        return 2
    os.chdir(REPO_ROOT)
    runner = Runner(python=_python(), dry_run=args.dry_run)
    try:
        part.run(runner, args.settings)
    except PipelineError as error:
        print(f'error: {error}', file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print(f'[{args.part}] interrupted; rerun to resume', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
