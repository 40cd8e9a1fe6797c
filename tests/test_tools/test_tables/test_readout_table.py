"""tools/tables/readout_table.py (make tables-readout) on the tiny model: the stamp, one row per
backbone variant, layer and target map, the plot beside the table; a missing checkpoint is
one line."""
from __future__ import annotations

import os.path as osp

import pytest
from helpers import load_tool, make_checkpoint, one_torch_thread, write_tiny_config  # noqa: F401

from posattack.readout.target_maps import target_map_names


@pytest.mark.slow
def test_table_has_every_variant_layer_and_target(synthetic_root, tmp_path):
    config = write_tiny_config(tmp_path / 'tiny.py', synthetic_root)
    checkpoint = make_checkpoint(config, tmp_path / 'model.pth')
    out = tmp_path / 'tables' / 'readout.md'
    code = load_tool('readout_table').main([
        '--config', config, '--checkpoint', checkpoint, '--data', str(synthetic_root),
        '--work-dir', str(tmp_path / 'work'), '--out', str(out), '--epochs', '1'])
    assert code == 0
    text = out.read_text()
    assert text.splitlines()[1].startswith('Measured ') and 'load average' in text
    rows = [line for line in text.splitlines() if line.startswith('| ') and '`' in line]
    variants = ('trained_zero', 'trained_reflect', 'trained_replicate', 'random_init_zero')
    # the tiny demo model's default depth layers: three stage outputs and the head's input
    assert len(rows) == len(variants) * 4 * len(target_map_names())
    for variant in variants:
        assert sum(row.startswith(f'| {variant} |') for row in rows) == 4 * 5
    assert osp.isfile(tmp_path / 'tables' / 'readout.png')


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    code = load_tool('readout_table').main(['--checkpoint', str(tmp_path / 'none.pth'),
                                            '--work-dir', str(tmp_path / 'w')])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and 'make demo-seeds' in err and '\n' not in err
