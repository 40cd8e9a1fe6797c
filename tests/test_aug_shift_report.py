"""The AugShift comparison table against numbers worked out by hand.

The attack results are test_report's hand-built dict (128 channels; N=10: targeted 50 vs
random 66/68/70; N=20: targeted 58 vs random 60/64/68; clean 70, center 75, periphery 60).
"""
from __future__ import annotations

import json

import pytest
from helpers import load_tool
from test_report import hand_results  # noqa: F401  (the fixture)

from posattack.report.aug_shift_table import comparison_row, markdown_table
from posattack.utils.fileio import write_json_atomic

CONSISTENCY = {'metrics': {'Cons.8': 91.25, 'Cons.16': 88.5, 'agreement_mIoU.8': 80.0,
                           'center.Cons.8': 95.0, 'periphery.Cons.8': 87.5,
                           'periphery_minus_center.Cons.8': -7.5}}


def test_row_at_ten_percent(hand_results):  # noqa: F811
    row = comparison_row('demo', CONSISTENCY, hand_results, fraction=0.1)
    # 10/128 = 7.8% is nearer 10% than 20/128 = 15.6%
    assert row['num_channels'] == 10 and row['num_channels_total'] == 128
    assert row['mIoU'] == 70
    assert row['targeted_drop'] == pytest.approx(20)  # 70 - 50
    assert row['random_drop'] == pytest.approx(2)  # 70 - mean(66, 68, 70)
    assert row['random_drop_std'] == pytest.approx(2)
    assert row['targeted_minus_random'] == pytest.approx(18)
    assert row['num_std'] == pytest.approx(9)
    # targeted: periphery drop 60 - 35 = 25, center drop 75 - 65 = 10
    assert row['periphery_minus_center'] == pytest.approx(15)
    assert row['consistency']['Cons.8'] == 91.25
    assert 'agreement_mIoU.8' not in row['consistency']


def test_row_at_another_fraction(hand_results):  # noqa: F811
    row = comparison_row('demo', CONSISTENCY, hand_results, fraction=0.15)
    assert row['num_channels'] == 20
    assert row['targeted_drop'] == pytest.approx(12)  # 70 - 58
    assert row['random_drop'] == pytest.approx(6)  # 70 - 64
    assert row['targeted_minus_random'] == pytest.approx(6)
    assert row['periphery_minus_center'] == pytest.approx(5)  # (60 - 50) - (75 - 70)


def test_markdown_table(hand_results):  # noqa: F811
    table = markdown_table([comparison_row('demo', CONSISTENCY, hand_results)], [8, 16])
    lines = table.splitlines()
    assert lines[0].startswith('| Model | mIoU | Cons.8 | Cons.16 | N removed')
    assert lines[2] == ('| demo | 70.00 | 91.25 | 88.50 | 10/128 | 20.00 | 2.00 (2.00) '
                        '| +18.00 | +15.00 |')


def test_table_tool_writes_table_and_numbers(hand_results, tmp_path):  # noqa: F811
    tool = load_tool('aug_shift_table')
    consistency = write_json_atomic(str(tmp_path / 'consistency.json'), CONSISTENCY)
    results = write_json_atomic(str(tmp_path / 'results.json'), hand_results)
    out = tmp_path / 'table.md'
    assert tool.main(['--run', 'a', consistency, results, '--run', 'b', consistency, results,
                      '--out', str(out)]) == 0
    assert out.read_text().count('| a |') == 1 and '| b |' in out.read_text()
    rows = json.loads((tmp_path / 'table.json').read_text())
    assert [row['model'] for row in rows] == ['a', 'b']
    # a missing file: exit 2, nothing written
    assert tool.main(['--run', 'a', str(tmp_path / 'nope.json'), results,
                      '--out', str(tmp_path / 'other.md')]) == 2
    assert not (tmp_path / 'other.md').exists()
