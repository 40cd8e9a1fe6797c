"""What the calibrated default costs against the default it replaced: whole runs, one ratio.

    python tools/analysis_tools/benchmark_default_cost.py CONFIG CHECKPOINT [--rounds 2] \
        [--cfg-options ...]
    python tools/analysis_tools/benchmark_default_cost.py CONFIG random [--cfg-options ...] # random

Times complete ``tools/attack.py`` runs (each in its own process, from model build to
report.md, overlays off) on the same config, checkpoint and images:

* before: the old default, emulated with today's code: the ranking identified on the scored
  images during the sweep (``--identify-on test``) and 8 draws at every N, the primary
  included (``--max-draws 8``, so no sequential draws);
* now: the new default: the ranking identified on held-out train images, sequential draws at
  the primary N (19 to 99), 8 draws at the other N, the placebo check in the statistics.

Each run's CPU time (the child process's user + system time, getrusage) is the measure: a
shared machine stretches wall time by however much else runs, CPU time far less. Rounds
alternate the order; it prints every run's CPU and wall time, its settings and the draws the
sequential rule made, and now/before per round and overall in CPU time (the issue's target:
<= 1.5). Compare ratios within one invocation only.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VARIANTS = {'before': ['--identify-on', 'test', '--max-draws', '8'], 'now': []}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)   # the children waited for so far
    return usage.ru_utime + usage.ru_stime


def _run(config, checkpoint, work_dir, extra, cfg_options, threads
         ) -> tuple[float, float, dict]:
    """(CPU seconds, wall seconds, results.json) of one tools/attack.py run."""
    command = [sys.executable, osp.join(REPO_ROOT, 'tools', 'attack.py'), config, checkpoint,
               '--work-dir', work_dir, '--no-overlays', *extra]
    if cfg_options:
        command += ['--cfg-options', *cfg_options]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f'error: {" ".join(command)} failed:\n{done.stderr[-2000:]}')
    with open(osp.join(work_dir, 'results.json')) as f:
        results = json.load(f)
    return cpu, seconds, results


def _random_checkpoint(config: str, cfg_options) -> str:
    """The config's model with seed-0 random weights, saved where the runs can load it."""
    import torch
    from mmengine.config import DictAction

    from posattack.models.builder import load_segmentor
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    options = parser.parse_args(['--cfg-options', *cfg_options]).cfg_options if cfg_options \
        else None
    torch.manual_seed(0)
    model, _ = load_segmentor(config, None, cfg_options=options)
    path = osp.join(tempfile.mkdtemp(prefix='posattack-bench-'), 'random_init.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def _describe(results: dict) -> str:
    primary = next((t for t in results['tests'] if t.get('primary')), None)
    source = results.get('ranking_source') or {}
    text = (f'{len(results["settings"])} settings, ranking from '
            f'{source.get("num_images")} {source.get("split")} images')
    if primary is not None:
        text += (f', {primary["num_draws"]} draws at the primary N={primary["num_channels"]} '
                 f'(claim 1 p = {primary["p_value"]:.3f})')
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="a checkpoint, or 'random' for the config's "
                        'random initialisation (seed 0), saved to a temporary file')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--now-options', nargs='+', default=[],
                        help="extra tools/attack.py options of the 'now' runs (e.g. "
                        "'--exceedances=10': a design tried before the default; several in "
                        "one value split at spaces)")
    parser.add_argument('--cfg-options', nargs='+', default=[])
    args = parser.parse_args(argv)
    # one value may hold several options ('--now-options=--max-draws=29 --exceedances=3':
    # argparse takes a value that starts with -- only in the = form)
    VARIANTS['now'] = [part for option in args.now_options for part in option.split()]
    created = None
    if args.checkpoint == 'random':
        args.checkpoint = created = _random_checkpoint(args.config, args.cfg_options)
    totals = {name: 0.0 for name in VARIANTS}   # CPU seconds
    walls = {name: 0.0 for name in VARIANTS}
    print(f'config {args.config}, {args.rounds} round(s), {args.threads} torch thread(s), '
          f'now = the default {" ".join(args.now_options)}')
    for round_index in range(args.rounds):
        order = list(VARIANTS) if round_index % 2 == 0 else list(reversed(VARIANTS))
        times = {}
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                cpu, wall, results = _run(args.config, args.checkpoint, osp.join(tmp, 'w'),
                                          VARIANTS[name], args.cfg_options, args.threads)
            times[name] = cpu
            totals[name] += cpu
            walls[name] += wall
            print(f'round {round_index + 1} {name:>6}: CPU {cpu:7.1f} s, wall {wall:7.1f} s  '
                  f'({_describe(results)})')
        print(f'round {round_index + 1} now/before (CPU): {times["now"] / times["before"]:.2f}')
    print(f'overall now/before (CPU time): {totals["now"] / totals["before"]:.2f} (target <= 1.5;'
          f' wall time: {walls["now"] / walls["before"]:.2f}, on a machine other jobs share)')
    if created:   # an R50 is 270 MB: leave nothing in the temporary folder
        shutil.rmtree(osp.dirname(created), ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
