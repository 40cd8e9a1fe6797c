"""tools/analysis_tools/benchmark_full_resolution.py and tools/analysis_tools/cost_projection.py
on a quick size: every phase timed and kept, runs not done said to be "not measured", and the
projection is the formula of its docstring applied to the kept figures (recomputed here by
hand)."""
from __future__ import annotations

import json
import os.path as osp

import pytest
from helpers import load_tool

pytestmark = pytest.mark.slow  # spawns a worker process and builds an R50


def test_phases_kept_table_and_projection(tmp_path, capsys):
    benchmark = load_tool('benchmark_full_resolution')
    results = str(tmp_path / 'results')
    argv = ['--arch', 'deeplabv3_r50', '--images', '1', '--size', '64', '128',
            '--settings-per-kind', '1', '--results', results]
    assert benchmark.main(argv) == 0
    with open(osp.join(results, 'deeplabv3_r50_1img.json')) as f:
        kept = json.load(f)
    assert set(kept['seconds']) == set(benchmark.PHASES)
    for phase in ('build', 'identification', 'clean pass', 'statistics', 'report',
                  'overlays'):
        assert kept['seconds'][phase]['wall'] > 0 and kept['seconds'][phase]['cpu'] > 0
    assert kept['fast_path'] and kept['channels'] == 2048 and kept['size'] == [64, 128]
    assert kept['overlay_phase'] == 'render' and len(kept['estimates']) == 3
    assert 0 < kept['rss_built_mb'] <= kept['peak_rss_mb']
    capsys.readouterr()
    # the table: the kept run, and "not measured" for what did not run
    assert benchmark.main(argv[:2] + ['pspnet_r50'] + argv[2:] + ['--table-only']) == 0
    table = capsys.readouterr().out
    assert '| DeepLabv3-R50-D8 (whole) | 1 | yes |' in table
    assert '| PSPNet-R50-D8 (whole) | 1 | not measured |' in table

    projection = load_tool('cost_projection')
    first, most = projection.default_settings(2048)
    assert (first, most) == (48, 128)  # 1 clean + 4 targeted + 4 x 8 draws + 11 more at 5 %
    s = kept['seconds']
    cpu = {phase: s[phase]['cpu'] for phase in s}  # one thread: CPU seconds
    per_setting = (cpu['targeted (per setting)'] + cpu['random (per setting)']) / 2
    expected = (cpu['build'] + 500 * cpu['identification']
                + 500 * max(cpu['clean pass'] - per_setting, 0)
                + 500 * 47 * per_setting + cpu['statistics'] + cpu['report']
                + 4 * cpu['overlays'])
    got = projection.project(kept, first - 1, 500, 4)
    assert got['total'] == pytest.approx(expected)
