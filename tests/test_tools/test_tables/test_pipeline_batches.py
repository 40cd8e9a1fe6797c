"""make demo-seeds' scheduling (tools/tables/pipeline.py demo-seeds, tools/tables/steps.py's
batches), driven with a stand-in python that records what it was asked to do: JOBS=2 really
trains two models at once, a model already trained is not trained again, and a failed
training stops the pipeline before the attack, naming its log."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

# Every test runs the pipeline in its own process (it spawns the stand-ins; one waits 10 s).
pytestmark = pytest.mark.slow

# The stand-in interpreter. train.py: seed 0 waits (up to 10 s) until seed 1 has started, so
# under JOBS=1 it times out and fails, and under JOBS=2 it finishes; a seed listed in
# $FAIL_SEEDS fails. attack.py and pooled_table.py leave a mark. Every call is logged.
FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "$*" >> "$CALLS"
case $1 in
  tools/train.py)
    work=$4; all="$*"; seed=${all##*randomness.seed=}; seed=${seed%% *}
    mkdir -p "$work"; touch "$MARKS/started$seed"
    case " $FAIL_SEEDS " in *" $seed "*) echo "boom $seed"; exit 1 ;; esac
    if [ "$seed" = 0 ]; then
      for _ in $(seq 100); do [ -f "$MARKS/started1" ] && break; sleep 0.1; done
      [ -f "$MARKS/started1" ] || { echo "seed 1 never ran beside seed 0"; exit 1; }
    fi
    echo "$work/iter_10.pth" > "$work/last_checkpoint" ;;
  tools/attack.py) touch "$MARKS/attacked" ;;
  tools/tables/pooled_table.py) touch "$MARKS/tabled" ;;
esac
'''


def _run(tmp_path, jobs, seeds=3, fail_seeds=''):
    venv, marks, data = tmp_path / 'venv', tmp_path / 'marks', tmp_path / 'data'
    for folder in (venv / 'bin', marks, data):
        folder.mkdir(parents=True, exist_ok=True)
    (data / '.posattack_synthetic.json').write_text('{"complete": true}')  # no data generation
    python = venv / 'bin' / 'python'
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, POSATTACK_VENV=str(venv), CALLS=str(tmp_path / 'calls'),
               MARKS=str(marks), FAIL_SEEDS=fail_seeds, JOBS=str(jobs), SEEDS=str(seeds),
               DATA=str(data), WORK=str(tmp_path / 'work'), TABLE=str(tmp_path / 'table.md'),
               README='0')
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'tables',
                                                        'pipeline.py'), 'demo-seeds'],
                          capture_output=True, text=True, env=env, timeout=120)
    calls = (tmp_path / 'calls').read_text().splitlines() if (tmp_path / 'calls').exists() \
        else []
    return done, calls, marks


def _trained_seeds(calls):
    return sorted(int(c.split('randomness.seed=')[1].split()[0])
                  for c in calls if c.startswith('tools/train.py'))


def test_two_jobs_train_side_by_side_then_attack_every_model(tmp_path):
    done, calls, marks = _run(tmp_path, jobs=2)
    assert done.returncode == 0, done.stderr
    assert _trained_seeds(calls) == [0, 1, 2]
    attack = next(c for c in calls if c.startswith('tools/attack.py'))
    assert attack.count('/last_checkpoint') == 0 and attack.count('iter_10.pth') == 3
    assert '--model-names seed0 seed1 seed2' in attack
    assert (marks / 'tabled').exists()
    # each model's output went to its own log, not interleaved on the terminal
    assert (tmp_path / 'work' / 'seed2' / 'train.out').exists()


def test_one_job_trains_one_model_at_a_time(tmp_path):
    """The stand-in's seed 0 needs seed 1 beside it: one at a time, it fails (and so the
    two-job test above shows real concurrency, not a lucky ordering)."""
    done, calls, marks = _run(tmp_path, jobs=1, seeds=2)
    assert done.returncode != 0
    assert _trained_seeds(calls) == [0]
    assert not (marks / 'attacked').exists()


def test_a_trained_model_is_not_trained_again(tmp_path):
    done, _, _ = _run(tmp_path, jobs=2)
    assert done.returncode == 0, done.stderr
    (tmp_path / 'calls').unlink()
    done, calls, _ = _run(tmp_path, jobs=2)
    assert done.returncode == 0, done.stderr
    assert _trained_seeds(calls) == []
    assert any(c.startswith('tools/attack.py') for c in calls)


def test_a_failed_training_stops_before_the_attack_and_names_its_log(tmp_path):
    done, calls, marks = _run(tmp_path, jobs=2, fail_seeds='1')
    assert done.returncode == 1
    log = tmp_path / 'work' / 'seed1' / 'train.out'
    assert f'error: training seed 1 failed; see {log}' in done.stderr
    assert 'boom 1' in log.read_text()
    assert not (marks / 'attacked').exists()
    assert 2 not in _trained_seeds(calls)  # the next batch never started


def test_a_bad_jobs_value_is_refused_before_anything_runs(tmp_path):
    done, calls, _ = _run(tmp_path, jobs='two')
    assert done.returncode == 2
    assert 'error: JOBS=two is not a positive integer; set JOBS=1 or more' in done.stderr
    assert calls == []
