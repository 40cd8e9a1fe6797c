"""Report: aggregation, CSV, Markdown and plots against a hand-built results dict.

Every expected number below is worked out by hand from the values in `hand_results`.
"""
from __future__ import annotations

import csv
import json
import math
import os

import cv2
import numpy as np
import pytest
from helpers.hand_results import CLASSES

from posattack.report import (aggregate, compare_targeted_random, format_summary_table, read_json,
                              results_to_rows, summarize_values, write_markdown_report,
                              write_report, write_results_csv)
from posattack.report.plots import (class_drop_matrix, plot_class_drop_heatmap,
                                    plot_iou_vs_border_distance, plot_miou_vs_channels)
from posattack.utils.fileio import write_json_atomic


def test_summarize_values_uses_sample_std_and_skips_undefined():
    assert summarize_values([66, 68, 70]) == {'mean': 68.0, 'std': 2.0, 'n': 3}
    stat = summarize_values([10, None, float('nan'), 20])
    assert stat['mean'] == 15.0 and stat['n'] == 2
    assert stat['std'] == pytest.approx(math.sqrt(50))  # ddof=1: ((5^2 + 5^2) / 1) ** 0.5
    assert summarize_values([61.5]) == {'mean': 61.5, 'std': None, 'n': 1}
    assert summarize_values([None]) == {'mean': None, 'std': None, 'n': 0}


def test_aggregate_groups_seeds(hand_results):
    stats = aggregate(hand_results)
    assert list(stats) == [('clean', 0, None), ('targeted', 10, 'overall'),
                           ('targeted', 20, 'overall'), ('targeted', 30, 'overall'),
                           ('random', 10, None), ('random', 20, None), ('random', 30, None)]
    random_10 = stats[('random', 10, None)]
    assert random_10['seeds'] == [0, 1, 2] and random_10['num_settings'] == 3
    assert random_10['metrics']['mIoU'] == {'mean': 68.0, 'std': 2.0, 'n': 3}
    assert random_10['metrics']['periphery.mIoU'] == {'mean': 57.0, 'std': 1.0, 'n': 3}
    center = random_10['metrics']['center.mIoU']
    assert center['mean'] == 73.0 and center['std'] == pytest.approx(math.sqrt(3))
    person = random_10['per_class']['full']['person']['IoU']  # seed 1 undefined
    assert person['mean'] == 15.0 and person['n'] == 2
    assert person['std'] == pytest.approx(math.sqrt(50))
    assert random_10['per_class']['full']['road']['Acc']['mean'] == 87.0
    assert stats[('random', 30, None)]['metrics']['mIoU'] == {'mean': 65.0, 'std': None, 'n': 1}
    assert stats[('targeted', 10, 'overall')]['metrics']['mIoU']['std'] is None


def test_compare_targeted_random_verdicts(hand_results):
    by_n = {c['num_channels']: c for c in compare_targeted_random(hand_results)}
    # N=10: targeted drop 20 vs random drops 4, 2, 0 (mean 2, sd 2): gap 18, z 9;
    # 95% prediction interval 2 ± t(0.975, 2) * 2 * sqrt(1 + 1/3); p = (1 + 0) / (1 + 3)
    half_10 = 4.302652729911275 * 2 * math.sqrt(4 / 3)
    assert by_n[10]['extra_drop'] == 18.0 and by_n[10]['num_std'] == 9.0
    assert by_n[10]['prediction_interval'] == pytest.approx([2 - half_10, 2 + half_10])
    assert by_n[10]['beyond_prediction_interval'] is True
    assert by_n[10]['p_value'] == pytest.approx(0.25)
    # N=20: targeted drop 12 vs 10, 6, 2 (mean 6, sd 4): z 1.5, inside 6 ± 19.87
    assert by_n[20]['extra_drop'] == 6.0 and by_n[20]['num_std'] == 1.5
    assert by_n[20]['beyond_prediction_interval'] is False
    assert by_n[20]['p_value'] == pytest.approx(0.25)
    # N=30: one draw is no distribution
    assert by_n[30]['extra_drop'] == 25.0 and by_n[30]['random_std'] is None
    assert by_n[30]['beyond_prediction_interval'] is None and by_n[30]['p_value'] is None


def test_markdown_report_numbers_and_verdicts(hand_results, tmp_path):
    plot = tmp_path / 'plots' / 'miou_vs_channels.png'
    path = write_markdown_report(str(tmp_path / 'report.md'), hand_results,
                                 plots={'mIoU vs channels removed': str(plot)})
    text = open(path, encoding='utf-8').read()
    assert '`configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py`' in text
    assert '`work_dirs/demo/iter_300.pth`' in text
    assert '`backbone:3` (128 channels)' in text
    assert 'Images evaluated: 8' in text
    assert ('Settings evaluated: 11 (1 clean, 3 targeted, 7 random: 3 seeds at N=10, '
            '3 seeds at N=20, 1 seed at N=30)') in text
    # Region table: full, center, periphery, left, right.
    assert '| clean | 0 | 70.00 | 75.00 | 60.00 | 70.00 | 70.00 |' in text
    assert '| random (3 seeds) | 10 | 68.00 ± 2.00 | 73.00 ± 1.73 | 57.00 ± 1.00 |' in text
    assert '| random (1 seed) | 30 | 65.00 | 70.00 | 55.00 |' in text
    # Drops: targeted N=10 periphery 60-35=25, center 75-65=10 -> 15; random N=10 per seed
    # periphery drops 2,3,4 and center drops 1,1,4 -> differences 1,2,0: 1.00 ± 1.00.
    assert '| targeted (overall) | 10 | 20.00 | 10.00 | 25.00 | 20.00 | 20.00 | 15.00 |' in text
    assert ('| random (3 seeds) | 10 | 2.00 ± 2.00 | 2.00 ± 1.73 | 3.00 ± 1.00 | 2.00 ± 2.00 '
            '| 2.00 ± 2.00 | 1.00 ± 1.00 |') in text
    # Border bands: clean band_0 = 60 - 5, band_1 = 75 - 3.
    assert '| clean | 0 | 55.00 | 72.00 |' in text
    assert ('N=10: targeted (overall) lowers full-image mIoU by 18.00 more than random '
            '(mean over 3 draws), z = 9.00; 95% prediction interval of one random draw\'s '
            'drop [-7.94, 11.94]: beyond it: yes; empirical p = 0.250 (floor 0.250 with 3 '
            'draws).') in text
    assert ('N=20: targeted (overall) lowers full-image mIoU by 6.00 more than random '
            '(mean over 3 draws), z = 1.50; 95% prediction interval of one random draw\'s '
            'drop [-13.87, 25.87]: beyond it: no;') in text
    n30 = [line for line in text.splitlines() if line.startswith('- N=30:')]
    assert len(n30) == 1 and 'by 25.00 more than random (mean over 1 draw)' in n30[0]
    assert 'one random draw is no distribution: no prediction interval and no p-value' in n30[0]
    # results without per-image counts say so instead of printing intervals
    assert 'Not computed: these results carry no per-image counts' in text
    assert '![mIoU vs channels removed](plots/miou_vs_channels.png)' in text


def test_markdown_says_when_targeted_is_weaker(hand_results, tmp_path):
    hand_results['settings'][1]['metrics']['mIoU'] = 72.0  # targeted N=10 above random's 68
    hand_results['settings'][1]['metrics']['full.mIoU'] = 72.0
    text = open(write_markdown_report(str(tmp_path / 'r.md'), hand_results)).read()
    assert ('N=10: targeted (overall) lowers full-image mIoU by 4.00 less than random '
            '(mean over 3 draws), z = -2.00;') in text


def test_summary_table(hand_results):
    lines = format_summary_table(hand_results).splitlines()
    assert lines[0].split() == ['setting', 'N', 'full', 'center', 'periphery', 'P-C', 'drop']
    random_10 = next(line for line in lines
                     if line.startswith('random (3 seeds)') and ' 10 ' in line)
    assert '68.00 ± 2.00' in random_10 and random_10.endswith('1.00 ± 1.00')
    targeted_10 = next(line for line in lines if line.startswith('targeted (overall)  10'))
    assert targeted_10.split()[-1] == '15.00'
    assert len(lines) == 2 + 7  # header, rule, one line per group


def test_rows_and_csv(hand_results, tmp_path):
    rows = results_to_rows(hand_results)
    # 11 settings x 7 regions x (1 mean row + 3 classes).
    assert len(rows) == 11 * 7 * 4
    row = next(r for r in rows if r['mode'] == 'random' and r['seed'] == 1
               and r['num_channels'] == 10 and r['eval_region'] == 'periphery'
               and r['class'] == 'mIoU')
    assert row['iou'] == 57.0 and row['attack_region'] is None
    road = next(r for r in rows if r['mode'] == 'targeted' and r['num_channels'] == 10
                and r['eval_region'] == 'full' and r['class'] == 'road')
    assert road['iou'] == 70.0 and road['acc'] == 71.0 and road['attack_region'] == 'overall'
    full_mean = next(r for r in rows if r['mode'] == 'clean' and r['eval_region'] == 'full'
                     and r['class'] == 'mIoU')
    assert full_mean['iou'] == 70.0 and full_mean['acc'] == 75.0  # mAcc

    path = write_results_csv(str(tmp_path / 'out' / 'results.csv'), hand_results)
    with open(path, newline='') as f:
        records = list(csv.DictReader(f))
    assert len(records) == len(rows)
    assert list(records[0]) == ['mode', 'num_channels', 'fraction', 'seed', 'attack_region',
                                'eval_region', 'class', 'iou', 'acc']
    person = next(r for r in records if r['mode'] == 'clean' and r['eval_region'] == 'full'
                  and r['class'] == 'person')
    assert person['iou'] == '' and person['seed'] == ''
    assert os.listdir(tmp_path / 'out') == ['results.csv']  # no temporary file left


def test_json_round_trip_writes_null_for_nan(tmp_path):
    obj = {'a': float('nan'), 'b': [1.5, float('inf')], 'c': np.float32(2.5), 'd': np.int64(3)}
    path = write_json_atomic(str(tmp_path / 'r.json'), obj)
    text = open(path).read()
    assert 'NaN' not in text and 'Infinity' not in text
    assert json.loads(text) == {'a': None, 'b': [1.5, None], 'c': 2.5, 'd': 3}
    assert read_json(path) == {'a': None, 'b': [1.5, None], 'c': 2.5, 'd': 3}
    assert os.listdir(tmp_path) == ['r.json']


def test_bad_input_errors(tmp_path, hand_results):
    with pytest.raises(FileNotFoundError, match='missing.json'):
        read_json(str(tmp_path / 'missing.json'))
    (tmp_path / 'broken.json').write_text('{"settings": [')
    with pytest.raises(ValueError, match='not valid JSON'):
        read_json(str(tmp_path / 'broken.json'))
    with pytest.raises(ValueError, match='settings'):
        aggregate({'class_names': [], 'regions': []})
    hand_results['settings'][3]['mode'] = 'shuffled'
    with pytest.raises(ValueError, match="setting #3 has mode 'shuffled'"):
        results_to_rows(hand_results)


def test_class_drop_matrix(hand_results):
    labels, classes, matrix = class_drop_matrix(hand_results)
    assert classes == CLASSES
    assert labels[0] == 'targeted (overall) N=10' and labels[3] == 'random (3 seeds) N=10'
    np.testing.assert_allclose(matrix[0, :2], [20.0, 30.0])          # 90-70, 80-50
    np.testing.assert_allclose(matrix[3, :2], [90 - 86.0, 80 - 77.0])  # random means 86, 77
    assert np.isnan(matrix[:, 2]).all()  # person undefined in clean


def _assert_sane_png(path, min_height=150, min_width=300):
    image = cv2.imread(path)
    assert image is not None, f'{path} is not a readable image'
    assert image.shape[0] >= min_height and image.shape[1] >= min_width
    assert image.std() > 5  # something is drawn, not a blank canvas


def test_plots_write_pngs(hand_results, tmp_path):
    path = plot_miou_vs_channels(hand_results, str(tmp_path / 'curves.png'))
    _assert_sane_png(path, min_width=600)  # three subplots
    _assert_sane_png(plot_iou_vs_border_distance(hand_results, str(tmp_path / 'bands.png')))
    _assert_sane_png(plot_class_drop_heatmap(hand_results, str(tmp_path / 'heat.png')))
    assert sorted(os.listdir(tmp_path)) == ['bands.png', 'curves.png', 'heat.png']


def test_plots_skip_or_refuse_clearly(hand_results, tmp_path):
    no_bands = dict(hand_results, regions=['full', 'center', 'periphery'])
    no_bands['settings'] = [dict(s, metrics={k: v for k, v in s['metrics'].items()
                                             if not k.startswith('band_')})
                            for s in hand_results['settings']]
    assert plot_iou_vs_border_distance(no_bands, str(tmp_path / 'bands.png')) is None
    assert not (tmp_path / 'bands.png').exists()
    with pytest.raises(ValueError, match='N=15'):
        plot_iou_vs_border_distance(hand_results, str(tmp_path / 'b.png'), num_channels=15)
    no_clean = dict(hand_results, settings=hand_results['settings'][1:])
    with pytest.raises(ValueError, match='no clean setting'):
        plot_class_drop_heatmap(no_clean, str(tmp_path / 'heat.png'))
    with pytest.raises(ValueError, match='none of the regions'):
        plot_miou_vs_channels(hand_results, str(tmp_path / 'c.png'), regions=('cell_0_0',))


def test_write_report_bundle(hand_results, tmp_path):
    paths = write_report(str(tmp_path), hand_results)
    for name in ('json', 'csv', 'miou_vs_channels', 'iou_vs_border_distance',
                 'class_drop_heatmap', 'report'):
        assert os.path.getsize(paths[name]) > 0, name
    assert read_json(paths['json'])['settings'][0]['per_class']['full']['person']['IoU'] is None
    report = open(paths['report']).read()
    assert '(miou_vs_channels.png)' in report and '(class_drop_heatmap.png)' in report
