"""tools/tables/pipeline.py's plan covers every part the shell scripts it replaced ran (the
tools/run_*.sh of 0.1, read before they were deleted): each part's dry run, in an empty
checkout where nothing is done yet, lists the runs and tables below, and runs nothing.

The expectations are written from the old scripts, not from the plan: the outputs each wrote
(tables, work dirs) and the options that fix what is measured."""
from __future__ import annotations

import io
import os
import re

import pytest
from helpers import REPO_ROOT, load_tool

pipeline = load_tool('pipeline')

# The make targets of 0.1's Makefile that ran a tools/run_*.sh (or a chain of them).
OLD_TARGETS = ['demo', 'demo-seeds', 'demo-profile', 'aug-shift-demo', 'tables', 'tables-demo',
               'tables-seeds', 'tables-study', 'tables-placebo', 'tables-profile',
               'tables-probes', 'tables-aug-shift', 'tables-speed']


def _dry_run(tmp_path, monkeypatch, part, *settings, **env):
    """The commands ``part`` would run in an empty checkout at ``tmp_path``, and its exit."""
    (tmp_path / 'docs').mkdir(exist_ok=True)
    (tmp_path / 'docs' / 'page.md').write_text('a page\n')
    monkeypatch.chdir(tmp_path)   # restored after the test: the pipeline changes into its root
    monkeypatch.setattr(pipeline, 'REPO_ROOT', str(tmp_path))
    for key in ('SEEDS', 'JOBS', 'DATA', 'WORK', 'SEED', 'RUNS', 'TRIALS', 'DATA_SEEDS',
                'PARTS', 'FULL_ITERS', 'DEMO_CKPT', 'TABLE', 'README', 'COMMAND', 'KEPT_ONLY',
                'EARLIER'):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    log = io.StringIO()
    monkeypatch.setattr('sys.stderr', log)
    code = pipeline.main([part, *settings, '--dry-run'])
    lines = log.getvalue().splitlines()
    assert not (tmp_path / 'work_dirs').exists() and not (tmp_path / 'data').exists()
    return code, [line for line in lines if line.startswith(('[dry-run]', '[skipped]'))], lines


def _outs(commands, flag='--out'):
    return [re.search(rf'{flag} (\S+)', c).group(1) for c in commands if f' {flag} ' in c]


def test_every_old_make_target_is_a_part_and_the_makefile_runs_the_plan():
    assert set(OLD_TARGETS) <= set(pipeline.PARTS)
    makefile = open(os.path.join(REPO_ROOT, 'Makefile')).read()
    listed = re.search(r'RUNS_AND_TABLES := (.*)', makefile).group(1).split()
    parts = re.search(r'TABLE_PARTS := ((?:.*\\\n)*.*)', makefile).group(1).replace('\\', ' ')
    targets = set(listed) - {'$(TABLE_PARTS)'} | set(parts.split())
    assert targets == set(pipeline.PARTS)
    assert '$(PIPELINE) $@' in makefile


def test_demo_is_data_training_and_the_attack_with_overlays(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'demo')
    assert code == 0 and len(runs) == 3
    assert 'make_synthetic_cityscapes.py data/synthetic_cityscapes_side_free --num-train 300 ' \
           '--num-val 60 --size 128 256 --seed 0 --side-free' in runs[0]
    assert 'tools/train.py configs/demo/deeplabv3_r18-tiny_flip_side-free' in runs[1]
    assert 'OMP_NUM_THREADS=1' in runs[1]   # one model with seed 0 of make demo-seeds
    assert "'$(cat work_dirs/demo/train/last_checkpoint)'" in runs[2]
    assert '--show-dir work_dirs/demo/attack/overlays' in runs[2]


def test_demo_seeds_trains_every_seed_then_one_pooled_attack_and_table(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'demo-seeds', SEEDS='3')
    assert code == 0
    trained = [c for c in runs if 'tools/train.py' in c]
    assert [re.search(r'randomness.seed=(\d)', c).group(1) for c in trained] == ['0', '1', '2']
    attack = next(c for c in runs if 'tools/attack.py' in c)
    assert '--model-names seed0 seed1 seed2' in attack and '--no-overlays' in attack
    assert _outs(runs) == ['docs/tables/demo_pooled.md']
    assert "--command 'SEEDS=3 make demo-seeds'" in runs[-2]
    assert runs[-1].endswith('tools/tables/include_tables.py README.md docs/embedded_default.md')


def test_the_study_runs_its_plan_and_writes_every_table(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-study')
    assert code == 0
    assert _outs(runs) == [f'docs/tables/study/{s}_data{d}.md' for s in
                           ('flip_side_free', 'plain', 'wide') for d in (0, 1)] + [
        'docs/tables/study.md']
    assert sum('tools/train.py' in c for c in runs) == 30   # 6 pooled runs x 5 seeds
    assert any('deeplabv3_r18-tiny-wide_synthetic-cityscapes.py' in c for c in runs)
    assert runs[-1].endswith('include_tables.py docs/seed_robustness.md')


def test_placebo_attacks_120_draws_and_writes_its_table(tmp_path, monkeypatch):
    code, runs, lines = _dry_run(tmp_path, monkeypatch, 'tables-placebo')
    assert code == 0
    attack = next(c for c in runs if '--work-dir work_dirs/tables/placebo/demo' in c)
    assert '--fractions 0.05 --max-draws 120 --exceedances 121' in attack
    assert _outs(runs)[-1] == 'docs/tables/placebo_demo.md'
    assert any('data1 skipped' in line for line in lines)   # the study's model is not there


def test_profile_part_trains_seed0_when_missing_and_writes_the_profile(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-profile')
    assert code == 0
    assert any('--work-dir work_dirs/demo/seeds/seed0/train' in c for c in runs)
    assert any('tools/depth_profile.py' in c and '--resume' in c for c in runs)
    assert _outs(runs)[-1] == 'docs/tables/demo_profile.md'


def test_probes_run_every_part_then_both_tables(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-probes')
    assert code == 0
    assert _outs(runs, '--work-dir') == [f'work_dirs/probe_tables/{p}' for p in (
        'table1', 'full_width', 'full_width_per_image', 'protocol', 'long')]
    assert _outs(runs) == ['docs/tables/probes_table1.md', 'docs/tables/probes_protocol.md']
    assert runs[-1].endswith('include_tables.py docs/probes.md')


def test_aug_shift_runs_eight_settings_for_three_seeds(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-aug-shift')
    assert code == 0
    for tool in ('tools/train.py', 'tools/consistency.py', 'tools/attack.py'):
        assert sum(tool in c for c in runs) == 24
    assert 'model.latent_weight=100.0 model.dense_weight=10.0' in ' '.join(runs)
    attacks = [c for c in runs if 'tools/attack.py' in c]
    assert _outs(attacks, '--work-dir')[:2] == ['work_dirs/aug_shift/seed0/plain/attack',
                                                 'work_dirs/aug_shift/seed0/shift-crops/attack']
    assert all(c.endswith(' --resume') and '--no-overlays' in c for c in attacks)
    # a kept model is reused only when its checkpoint records this config, seed and data
    assert all('--keep-finished' in c and '--no-train' not in c
               for c in runs if 'tools/train.py' in c)
    assert _outs(runs)[-1] == 'docs/tables/aug_shift.md'
    # at the paper's count, where each model's primary rank test gives the verdict
    assert '--fraction 0.05' in runs[-1] and '--not-rerun' not in runs[-1]


def test_aug_shift_subset_kept_only_trains_nothing_and_names_the_runs_left_out(tmp_path,
                                                                             monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-aug-shift', SEEDS='0',
                             RUNS='plain blurpool', KEPT_ONLY='1')
    assert code == 0
    trains = [c for c in runs if 'tools/train.py' in c]
    assert len(trains) == 2 and all('--keep-finished --no-train' in c for c in trains)
    assert '--not-rerun shift-crops augshift augshift-strong latent-only-1 latent-only-10 ' \
        'latent-only-100 --fraction' in runs[-1]
    assert 'RUNS="plain blurpool", KEPT_ONLY=1' in runs[-1]


def test_readout_trains_seed0_when_missing_then_writes_its_table(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-readout')
    assert code == 0
    assert any('--work-dir work_dirs/demo/seeds/seed0/train' in c for c in runs)
    assert runs[-2].endswith('tools/tables/readout_table.py')
    assert runs[-1].endswith('include_tables.py docs/position_readout.md')


def test_full_resolution_benchmarks_then_projects(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-full-resolution')
    assert code == 0
    assert _outs(runs) == ['docs/tables/speed_full_resolution.md', 'docs/tables/cost_projection.md']
    assert 'analysis_tools/benchmark_full_resolution.py' in runs[0]
    assert 'analysis_tools/cost_projection.py' in runs[1]
    assert runs[-1].endswith('include_tables.py docs/cost_model.md')


def test_speed_measures_every_benchmark_table(tmp_path, monkeypatch):
    code, runs, _ = _dry_run(tmp_path, monkeypatch, 'tables-speed')
    assert code == 0
    speed = ['metric', 'fast_path_demo', 'profile', 'default_cost_demo', 'default_cost_demo_h10',
             'default_cost_r50', 'default_cost_r50_max39', 'default_cost_r50_max29',
             'default_cost_demo_max39', 'default_cost_demo_max29', 'default_cost_demo_h3',
             'default_cost_demo_max29_h3', 'batched_demo', 'draws_demo', 'whole_process_r50',
             'fast_path_r50']
    assert _outs(runs) == ['docs/tables/demo_run.md'] + [f'docs/tables/speed_{name}.md'
                                                         for name in speed]
    assert runs[-1].endswith('include_tables.py docs/speed.md docs/cost_model.md')


def test_tables_runs_every_table_part_then_refills_readme_and_docs(tmp_path, monkeypatch):
    code, runs, lines = _dry_run(tmp_path, monkeypatch, 'tables')
    assert code == 0
    assert [line.removeprefix('[tables] ') for line in lines if line.startswith('[tables] ')] \
        == pipeline.TABLE_PARTS
    assert runs[-1].endswith('include_tables.py README.md docs/page.md')


@pytest.mark.parametrize('argv, message', [
    (['tables-sped'], "unknown part 'tables-sped'; choose from: demo demo-seeds"),
    (['demo', 'plain'], 'demo takes no settings (got plain); only tables-study does'),
])
def test_bad_parts_are_refused_in_one_line(argv, message, capsys):
    assert pipeline.main(argv) == 2
    assert message in capsys.readouterr().err
