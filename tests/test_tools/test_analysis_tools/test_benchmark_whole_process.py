"""tools/analysis_tools/benchmark_whole_process.py: the naive side runs every forward it
claims exactly once (counted on the model), the whole side is a real run_attack (its work dir
kept and read back), and the ratio printed is the two measured times'."""
from __future__ import annotations

import json
import os.path as osp
import re
import time
import types

import pytest
from helpers import load_tool


def test_naive_units_are_every_forward_once_half_before_the_whole_run():
    tool = load_tool('benchmark_whole_process')
    upfront, final = ['clean', 'a', 'b'], ['clean', 'a', 'b', 'c']   # 'c': a later draw round
    before, after = tool.naive_units(upfront, final, num_test=5, num_train=3)
    # before: train image 0 x 3 views, test images 0-1 x the 3 settings known in advance
    assert len(before) == 3 + 2 * 3
    assert {key for split, _, key in before if split == 'test'} == set(upfront)
    assert {i for split, i, _ in before if split == 'train'} == {0}
    # after: train images 1-2 x 3 views, test images 2-4 x 4 settings, images 0-1 x 'c'
    assert len(after) == 2 * 3 + 3 * 4 + 2
    everything = [('train', i, v) for i in range(3) for v in tool.VIEWS] + \
        [('test', i, k) for i in range(5) for k in final]
    assert sorted(before + after) == sorted(everything)


def test_naive_units_refuse_a_run_that_skipped_a_setting_known_in_advance():
    tool = load_tool('benchmark_whole_process')
    with pytest.raises(RuntimeError, match='did not evaluate b'):
        tool.naive_units(['clean', 'b'], ['clean'], num_test=2, num_train=2)


def test_phase_clocks_charge_each_phase_its_calls_and_restore_the_functions():
    tool = load_tool('benchmark_whole_process')

    def busy(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return seconds

    module = types.SimpleNamespace(slow=busy, fast=busy, untimed=busy)
    with tool.phase_clocks(module, {'slow part': ('slow', ), 'fast part': ('fast', )}) as spent:
        assert module.slow(0.2) == 0.2 and module.fast(0.02) == 0.02
        module.slow(0.1)
        module.untimed(0.1)
    assert module.slow is busy and module.fast is busy
    assert 0.3 <= spent['slow part', 'wall'] < 0.35
    assert 0.02 <= spent['fast part', 'wall'] < 0.05
    assert spent['slow part', 'cpu'] > spent['fast part', 'cpu'] > 0


@pytest.mark.slow  # a whole attack (statistics, plots) and ~90 forwards of the demo model
def test_whole_run_and_naive_forwards_on_the_demo_model(tmp_path, capsys, monkeypatch):
    tool = load_tool('benchmark_whole_process')
    calls = []

    def counted_model(*args, **kwargs):   # the naive side's model: count its forwards
        model, cfg = tool_build(*args, **kwargs)
        predict = model.predict
        model.predict = lambda *a, **k: calls.append(1) or predict(*a, **k)
        return model, cfg

    tool_build = tool.build_model
    monkeypatch.setattr(tool, 'build_model', counted_model)
    work = str(tmp_path / 'work')
    argv = ['--model', 'demo', '--images', '2', '--train-images', '2', '--size', '64', '128',
            '--work-dir', work]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)
    settings = len(results['settings'])
    # clean + 3 targeted + 8 draws at 10% and 20% + the primary's draw rounds at 5%
    assert settings in [1 + 3 + 16 + draws for draws in (19, 29, 39, 59, 99)]
    assert results['ranking_source']['split'] == 'train'
    assert results['ranking_source']['num_images'] == 2
    assert osp.isfile(osp.join(work, 'report.md')) and results['tests']
    forwards = settings * 2 + 2 * 3
    assert len(calls) == forwards + 1   # + the warm-up forward
    assert f'naive: {forwards} full forwards ({settings} settings x 2 images + 2 train ' \
        'images x 3 views)' in out
    rows = {m[0]: (float(m[1]), float(m[2]))
            for m in re.findall(r'^\| (whole|naive|whole / naive) \| ([\d.]+) \| ([\d.]+) \|$',
                                out, re.M)}
    ratio = rows['whole'][0] / rows['naive'][0]
    assert rows['whole / naive'][0] == pytest.approx(ratio, rel=0.02, abs=0.002)
    met = 'met' if rows['whole / naive'][0] <= 0.4 else 'not met'
    assert f'target: whole / naive <= 0.4 (CPU time): {met} (' in out
    assert '| report |' in out and '| other |' in out
