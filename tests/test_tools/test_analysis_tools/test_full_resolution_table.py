"""The full-resolution table and the projection from kept results built by hand: a cost
that came out below zero (a difference of two sweeps under a changing load) is said to be
"not computed", never printed as a time. Nothing runs a model here."""
from __future__ import annotations

import json

from helpers import load_tool


def _kept_run(arch: str, images: int, random_cpu: float) -> dict:
    phase = dict(wall=2.0, cpu=1.0)
    seconds = {name: dict(phase) for name in ('build', 'identification', 'clean pass',
                                              'targeted (per setting)', 'statistics',
                                              'report', 'overlays')}
    seconds['random (per setting)'] = dict(wall=-3.0, cpu=random_cpu)
    return dict(arch=arch, images=images, fast_path=True, channels=2048,
                settings_per_kind=2, size=[1024, 2048], overlay_phase='render',
                rss_built_mb=700.0, peak_rss_mb=5000.0, seconds=seconds, threads=1,
                estimates=[[10.0, 12.0]], load_average=[7.0, 7.0, 7.0])


def test_a_cost_below_zero_is_not_computed_in_either_table(tmp_path, capsys):
    """A per-setting figure is a difference of two sweeps; under a changing load it can come
    out below zero. Neither the table nor the projection may print it as a cost."""
    results = tmp_path / 'results'
    results.mkdir()
    (results / 'deeplabv3_r50_2img.json').write_text(
        json.dumps(_kept_run('deeplabv3_r50', 2, random_cpu=-0.5)))
    benchmark = load_tool('benchmark_full_resolution')
    assert benchmark.main(['--arch', 'deeplabv3_r50', '--images', '2', '--results',
                           str(results), '--table-only']) == 0
    row = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith('| DeepLabv3-R50-D8 (whole) | 2 |')][0]
    cells = [cell.strip() for cell in row.strip('|').split('|')]
    # wall -3.0 / 2 images and CPU -0.5 / 2: neither is a cost
    assert cells[3 + benchmark.PHASES.index('random (per setting)')] == \
        'not computed / not computed'
    assert cells[3 + benchmark.PHASES.index('targeted (per setting)')] == '1.0 / 0.5'

    projection = load_tool('cost_projection')
    assert projection.main(['--arch', 'deeplabv3_r50', '--results', str(results),
                            '--no-flops']) == 0
    row = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith('| DeepLabv3-R50-D8 (whole) |')][0]
    assert 'not computed: random (per setting) measured below zero' in row
    assert ' h ' not in row and ' min' not in row  # no duration printed for it


def test_memory_over_images_by_hand(tmp_path, capsys):
    results = tmp_path / 'results'
    results.mkdir()
    for arch, peaks in (('deeplabv3_r50', {1: 5000.0, 2: 5150.0, 4: 5200.0}),
                        ('pspnet_r50', {1: 5000.0, 4: 6000.0}),
                        ('segformer_b0_whole', {4: 7000.0})):
        for images, peak in peaks.items():
            run = _kept_run(arch, images, random_cpu=1.0)
            run['peak_rss_mb'] = peak
            (results / f'{arch}_{images}img.json').write_text(json.dumps(run))
    benchmark = load_tool('benchmark_full_resolution')
    assert benchmark.main(['--arch', 'deeplabv3_r50', 'pspnet_r50', 'segformer_b0_whole',
                           '--results', str(results), '--table-only']) == 0
    out = capsys.readouterr().out
    # 5200 / 5000 - 1 = +4.0 %: within 5 %; 6000 / 5000 - 1 = +20.0 %: not
    assert ('DeepLabv3-R50-D8 (whole): peak RSS 5000 MB on 1, 5150 MB on 2, 5200 MB on 4 '
            'image(s): 1 to 4 images flat (within 5%), largest peak +4.0% of the 1-image '
            'peak.') in out
    assert ('PSPNet-R50-D8 (whole): peak RSS 5000 MB on 1, 6000 MB on 4 image(s): 1 to 4 '
            'images grows by more than 5%, largest peak +20.0% of the 1-image peak.') in out
    assert ('SegFormer-B0 (whole): peak memory over images not computed (image counts '
            'measured: 1; 2 needed).') in out
